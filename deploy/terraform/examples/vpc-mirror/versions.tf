terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # wallarm/wallarm/aws 1.1.7 asks for >= 5.30.0, < 6.0.0.
      version = ">= 5.30.0, < 6.0.0"
    }
  }
}
