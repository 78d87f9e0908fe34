resource "terraform_data" "x" {
  input = "x"
}

resource "terraform_data" "y" {
  input = terraform_data.x.id
}
