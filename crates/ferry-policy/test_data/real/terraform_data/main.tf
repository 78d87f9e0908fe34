resource "terraform_data" "bucket" {
  count = 2
  input = "b${count.index}"
}

resource "terraform_data" "enc" {
  count = 2
  input = terraform_data.bucket[count.index].id
}

resource "terraform_data" "single" {
  input = terraform_data.bucket[1].output
}

resource "terraform_data" "keyed" {
  for_each = toset(["a", "b"])
  input    = each.key
}

resource "terraform_data" "pick" {
  input = terraform_data.keyed["b"].id
}

module "m" {
  source = "./m"
}
