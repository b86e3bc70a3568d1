variable "region" {
  description = "AWS region of the VPC."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "rebuilder"
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
  description = "VNI the mirror sessions stamp on their packets; rebuilder keeps only this one and adds it to replayed requests as X-Mirror-VNI."
  type        = number
  default     = 1377
}

variable "server_ports" {
  description = "Ports the mirrored servers take HTTP on: the mirror filter accepts received TCP to these ports only, and rebuilder uses them to tell clients from servers."
  type        = list(number)
  default     = [80]
}

variable "xdp_mode" {
  description = "rebuilder's capture: generic (MTU 9001 kept, jumbo sources pass), native (ENA driver mode, MTU 3498) or off (UDP socket). See modules/rebuilder/README.md."
  type        = string
  default     = "generic"
}

variable "rebuilder_instance_type" {
  description = "Instance type of the rebuilder nodes."
  type        = string
  default     = "c5n.large"
}

variable "rebuilder_nodes" {
  description = "Number of rebuilder nodes (min, max and desired of their group)."
  type        = number
  default     = 2
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
