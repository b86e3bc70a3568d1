variable "region" {
  description = "AWS region of the VPC."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name, at most 22 characters: the WAF module names its ALB NAME-waf-xxxxx (5 random letters) and load balancer names stop at 32; rebuilder's target group is NAME-vxlan."
  type        = string
  default     = "rebuilder"

  validation {
    # ALB and NLB names: letters, digits and hyphens, no hyphen first or last, not "internal-".
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?$", var.name)) && !startswith(lower(var.name), "internal-")
    error_message = "The name must be 1 to 22 letters, digits or hyphens, neither starting nor ending with a hyphen nor starting with internal- (NAME-waf-xxxxx, the WAF's ALB, must fit the 32 characters of a load balancer name)."
  }
}

variable "vpc_id" {
  description = "VPC holding the mirrored workload; rebuilder and the WAF go into it too."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (one per availability zone of the workload) for the NLB, the rebuilder nodes, the WAF's internal ALB and its nodes. They need a route to S3 and SSM (NAT or VPC endpoints) and to the Wallarm API."
  type        = list(string)
}

variable "release_s3_uri" {
  description = "The rebuilder release tarball (`cargo xtask dist`) uploaded to S3: s3://BUCKET/KEY. Give this or release_url."
  type        = string
  default     = ""
}

variable "release_url" {
  description = "The rebuilder release tarball as an https:// URL. Give this or release_s3_uri."
  type        = string
  default     = ""
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (its .sha256 file)."
  type        = string
}

variable "vni" {
  description = "VNI the mirror sessions stamp on their packets; rebuilder keeps only this one and adds it to replayed requests as X-Mirror-VNI. null: AWS picks a random one per session, and rebuilder keeps every VNI."
  type        = number
  default     = 1377

  validation {
    condition     = var.vni == null ? true : (floor(var.vni) == var.vni && var.vni >= 0 && var.vni <= 16777215)
    error_message = "The VNI must be a whole number from 0 to 16777215 (24 bits), or null."
  }
}

variable "server_ports" {
  description = "Ports the mirrored servers take HTTP on: the mirror filter accepts received TCP to these ports only (one rule each; a filter holds 10), and rebuilder uses them to tell clients from servers."
  type        = list(number)
  default     = [80]

  validation {
    condition     = length(var.server_ports) >= 1 && length(var.server_ports) <= 10 && alltrue([for p in var.server_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Give 1 to 10 server ports (a traffic mirror filter holds 10 rules), each a whole number from 1 to 65535."
  }
}

variable "xdp_mode" {
  description = "rebuilder's capture: generic (MTU 9001 kept: source frames up to the NLB's 8500 bytes arrive whole), native (ENA driver mode, MTU 3498: frames up to 3462 bytes) or off (UDP socket). See modules/rebuilder/README.md."
  type        = string
  default     = "generic"

  validation {
    condition     = contains(["generic", "native", "off"], var.xdp_mode)
    error_message = "xdp_mode must be generic, native or off."
  }
}

variable "rebuilder_instance_type" {
  description = "Instance type of the rebuilder nodes."
  type        = string
  default     = "c5n.large"
}

variable "rebuilder_min_nodes" {
  description = "Fewest rebuilder nodes; the group's CPU target-tracking policy scales between this and rebuilder_max_nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.rebuilder_min_nodes >= 1 && floor(var.rebuilder_min_nodes) == var.rebuilder_min_nodes
    error_message = "rebuilder_min_nodes must be a whole number, 1 or more."
  }
}

variable "rebuilder_max_nodes" {
  description = "Most rebuilder nodes (above rebuilder_min_nodes, so that the group can scale)."
  type        = number
  default     = 4

  validation {
    condition     = var.rebuilder_max_nodes >= 2 && floor(var.rebuilder_max_nodes) == var.rebuilder_max_nodes
    error_message = "rebuilder_max_nodes must be a whole number, 2 or more."
  }
}

variable "alarm_actions" {
  description = "ARNs (SNS topics) notified by rebuilder's CloudWatch alarms on its target group."
  type        = list(string)
  default     = []
}

variable "cloudwatch_metrics" {
  description = "Publish rebuilder's main metrics to CloudWatch through the CloudWatch agent (billed custom metrics)."
  type        = bool
  default     = false
}

variable "ship_logs" {
  description = "Ship rebuilder's logs to CloudWatch Logs (/rebuilder/NAME)."
  type        = bool
  default     = false
}

variable "wallarm_token" {
  description = "Wallarm node token (Wallarm Console, Nodes, create a Wallarm node)."
  type        = string
  sensitive   = true
}

variable "wallarm_api_host" {
  description = "Wallarm API: api.wallarm.com (EU cloud) or us1.api.wallarm.com (US cloud)."
  type        = string
  default     = "api.wallarm.com"
}

variable "waf_instance_type" {
  description = "Instance type of the Wallarm nodes."
  type        = string
  default     = "t3.medium"
}

variable "tags" {
  description = "Tags on every resource (provider default tags)."
  type        = map(string)
  default     = {}
}
