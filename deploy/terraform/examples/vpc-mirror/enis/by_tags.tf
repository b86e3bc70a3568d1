# Select ENIs by tags: every interface in this VPC carrying all the given tags. AWS does not tag
# instances' interfaces by itself (a launch template can, with tag_specifications of type
# network-interface), so this suits interfaces you tag on purpose. Copy this file over
# ../interfaces.tf to use it.
#
# Sessions follow ENIs: interfaces tagged later are mirrored from the next `terraform apply` on.

variable "source_eni_tags" {
  description = "Tags an interface must carry, all of them, to be mirrored."
  type        = map(string)

  validation {
    condition     = length(var.source_eni_tags) > 0
    error_message = "Give at least one tag, or every interface of the VPC would be mirrored."
  }
}

data "aws_network_interfaces" "tagged" {
  tags = var.source_eni_tags

  filter {
    name   = "vpc-id"
    values = [var.vpc_id]
  }
}

locals {
  mirror_eni_ids = sort(data.aws_network_interfaces.tagged.ids)
}
