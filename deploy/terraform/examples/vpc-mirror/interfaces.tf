# Which ENIs are mirrored: here, the primary interfaces of the running instances of the given
# Auto Scaling Groups. The files in enis/ are alternatives, each self-contained: copy one over
# this file to select ENIs another way. Every variant defines local.mirror_eni_ids.
#
# Sessions follow ENIs, not instances: an instance the group launches later is mirrored from
# the next `terraform apply` on, and a terminated one takes its session with it.

variable "source_asg_names" {
  description = "Auto Scaling Groups whose instances' primary ENIs are mirrored."
  type        = list(string)

  validation {
    condition     = length(var.source_asg_names) > 0
    error_message = "Name at least one Auto Scaling Group."
  }
}

data "aws_instances" "sources" {
  instance_state_names = ["running"]

  filter {
    name   = "tag:aws:autoscaling:groupName"
    values = var.source_asg_names
  }
}

data "aws_instance" "sources" {
  for_each    = toset(data.aws_instances.sources.ids)
  instance_id = each.value
}

locals {
  mirror_eni_ids = sort([for instance in data.aws_instance.sources : instance.network_interface_id])
}
