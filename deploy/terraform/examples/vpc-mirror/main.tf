# The reference deployment: mirror sessions on the chosen ENIs (interfaces.tf) send VXLAN to
# rebuilder's internal NLB; rebuilder nodes rebuild the HTTP requests and replay them to the
# internal ALB of Wallarm nodes running in monitoring mode (preset "mirror").
#
#   source ENIs --mirror sessions--> NLB :4789/udp --> rebuilder ASG --HTTP--> WAF ALB --> WAF nodes

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  vpc_cidr_blocks = [for a in data.aws_vpc.this.cidr_block_associations : a.cidr_block]
}

# The Wallarm nodes run Wallarm's AWS Marketplace AMI (owner 679593333241, wallarm-node-*): the
# account must subscribe to it in AWS Marketplace once before `terraform apply`, or their
# launches fail with OptInRequired.
module "waf" {
  source  = "wallarm/wallarm/aws"
  version = "1.1.7"

  app_name      = "${var.name}-waf"
  preset        = "mirror"
  mode          = "monitoring"
  token         = var.wallarm_token
  host          = var.wallarm_api_host
  vpc_id        = var.vpc_id
  instance_type = var.waf_instance_type

  lb_internal            = true
  lb_subnet_ids          = var.private_subnet_ids
  instance_subnet_ids    = var.private_subnet_ids
  lb_deletion_protection = false

  # Only the rebuilder nodes talk to the WAF: keep its ALB and nodes to the VPC.
  source_ranges             = local.vpc_cidr_blocks
  inbound_allowed_ip_ranges = local.vpc_cidr_blocks

  tags = var.tags
}

module "rebuilder" {
  source = "../../modules/rebuilder"

  name           = var.name
  vpc_id         = var.vpc_id
  subnet_ids     = var.private_subnet_ids
  instance_type  = var.rebuilder_instance_type
  release_s3_uri = var.release_s3_uri
  release_url    = var.release_url
  release_sha256 = var.release_sha256

  min_size         = var.rebuilder_min_nodes
  max_size         = var.rebuilder_max_nodes
  desired_capacity = var.rebuilder_min_nodes
  scaling_metric   = "cpu"
  alarm_actions    = var.alarm_actions

  cloudwatch_metrics = var.cloudwatch_metrics
  ship_logs          = var.ship_logs

  # The WAF's internal ALB, http://NAME:8445 in the mirror preset.
  upstream_url = module.waf.other.mirror_endpoint
  # With vni = null AWS picks each session's VNI: keep them all.
  vnis         = var.vni == null ? [] : [var.vni]
  vni_header   = "X-Mirror-VNI"
  server_ports = var.server_ports
  xdp_mode     = var.xdp_mode

  # So that `terraform destroy` removes the example whole.
  deletion_protection = false

  tags = var.tags
}

module "mirror_sessions" {
  source = "../../modules/mirror-sessions"

  name                  = "${var.name}-mirror"
  network_interface_ids = local.mirror_eni_ids
  target_nlb_arn        = module.rebuilder.nlb_arn
  vni                   = var.vni

  mirror_ingress                  = true
  ingress_destination_port_ranges = [for port in var.server_ports : { from = port, to = port }]

  tags = var.tags
}
