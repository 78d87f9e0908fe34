# A tiny stand-in for real infrastructure: terraform_data is built into Terraform, so this
# configuration plans and applies without downloading any provider.

variable "environment" {
  type        = string
  description = "Which environment this is (dev, prod)."
}

variable "replicas" {
  type        = number
  description = "How many app servers to pretend to run."
  default     = 1
}

resource "terraform_data" "network" {
  input = {
    name = "hello-${var.environment}"
    cidr = var.environment == "prod" ? "10.1.0.0/16" : "10.0.0.0/16"
  }
}

resource "terraform_data" "app" {
  count = var.replicas
  input = {
    name    = "app-${var.environment}-${count.index}"
    network = terraform_data.network.output.name
  }
}

output "network" {
  value = terraform_data.network.output
}

output "app_servers" {
  value = [for a in terraform_data.app : a.output.name]
}
