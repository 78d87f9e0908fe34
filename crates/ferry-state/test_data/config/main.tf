variable "db_password" {
  type      = string
  default   = "hunter2-input-secret"
  sensitive = true
}

resource "terraform_data" "web" {
  count = 2
  input = "web-${count.index}"
}

resource "terraform_data" "creds" {
  input = {
    user     = "admin"
    password = sensitive("s3cr3t-nested-pw")
    ports    = [80, 443]
  }
}

resource "terraform_data" "db" {
  input = var.db_password
}

resource "terraform_data" "tagged" {
  for_each = toset(["blue", "green"])
  input    = each.key
}

module "app" {
  source = "./modules/app"
  name   = "app-one"
  token  = sensitive("tok-module-secret")
}

output "db_password" {
  value     = var.db_password
  sensitive = true
}

output "web_ids" {
  value = terraform_data.web[*].id
}
