# Select ENIs by EKS managed node group: every interface of the groups' running nodes. The VPC
# CNI gives pods addresses on secondary interfaces too, and traffic to a pod (an ALB with
# target-type ip, for one) enters through the interface holding its address, so all of a
# node's interfaces are mirrored, not only the primary one. Copy this file over
# ../interfaces.tf to use it.
#
# Sessions follow ENIs, not instances: nodes and interfaces added later are mirrored from the
# next `terraform apply` on. Each interface takes at most 3 mirror sessions.

variable "eks_cluster_name" {
  description = "EKS cluster whose nodes are mirrored."
  type        = string
}

variable "eks_node_group_names" {
  description = "Managed node groups of that cluster whose nodes are mirrored."
  type        = list(string)

  validation {
    condition     = length(var.eks_node_group_names) > 0
    error_message = "Name at least one node group."
  }
}

data "aws_instances" "nodes" {
  instance_state_names = ["running"]

  # EKS tags the instances of managed node groups with these.
  filter {
    name   = "tag:eks:cluster-name"
    values = [var.eks_cluster_name]
  }

  filter {
    name   = "tag:eks:nodegroup-name"
    values = var.eks_node_group_names
  }
}

# DescribeNetworkInterfaces refuses a filter without values: skip the lookup when no node runs.
data "aws_network_interfaces" "nodes" {
  count = length(data.aws_instances.nodes.ids) > 0 ? 1 : 0

  filter {
    name   = "attachment.instance-id"
    values = data.aws_instances.nodes.ids
  }
}

locals {
  mirror_eni_ids = length(data.aws_network_interfaces.nodes) > 0 ? sort(data.aws_network_interfaces.nodes[0].ids) : []
}
