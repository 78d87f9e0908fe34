environment = "prod"
replicas    = 2
