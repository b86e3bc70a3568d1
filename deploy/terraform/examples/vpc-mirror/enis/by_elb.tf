# Select ENIs by load balancer: the interfaces ELB created for a Classic Load Balancer in this
# VPC (their description is "ELB NAME"). Copy this file over ../interfaces.tf to use it.
#
# A load balancer's interfaces are managed by ELB. The reference this example replaces found
# Application and Network Load Balancers' interfaces refused as mirror sources; if AWS refuses
# a session on yours, mirror the load balancer's targets instead: by_asg.tf, by_eks.tf or
# by_tags.tf. Both directions of a load balancer's traffic cross the same interfaces: the
# default filter (received traffic to the server ports) keeps the client side.

variable "source_load_balancer_name" {
  description = "Name of the Classic Load Balancer whose interfaces are mirrored."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,32}$", var.source_load_balancer_name))
    error_message = "A load balancer name is 1 to 32 letters, digits or hyphens."
  }
}

data "aws_network_interfaces" "load_balancer" {
  filter {
    name   = "vpc-id"
    values = [var.vpc_id]
  }

  filter {
    name   = "requester-id"
    values = ["amazon-elb"]
  }

  filter {
    name   = "description"
    values = ["ELB ${var.source_load_balancer_name}"]
  }
}

locals {
  mirror_eni_ids = sort(data.aws_network_interfaces.load_balancer.ids)
}
