variable "name" { type = string }
variable "token" {
  type = string
}

resource "terraform_data" "this" {
  input = var.name
}

resource "terraform_data" "secret" {
  input = var.token
}

output "id" { value = terraform_data.this.id }
