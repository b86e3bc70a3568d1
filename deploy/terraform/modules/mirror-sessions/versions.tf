terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_ec2_traffic_mirror_* with network_load_balancer_arn targets; the upper bound matches
      # the Wallarm module the reference example uses alongside.
      version = ">= 5.30.0, < 6.0.0"
    }
  }
}
