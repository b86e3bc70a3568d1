variable "name" {
  description = "Name of the NLB and prefix of every other resource (target group: NAME-vxlan)."
  type        = string
  default     = "rebuilder"

  validation {
    # The target group name NAME-vxlan must fit in 32 characters (the NLB's NAME too).
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,24}[A-Za-z0-9])?$", var.name))
    error_message = "The name must be 1 to 26 letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "vpc_id" {
  description = "VPC of the rebuilder nodes and their NLB (the mirror sources must reach it)."
  type        = string

  validation {
    condition     = can(regex("^vpc-([0-9a-f]{8}|[0-9a-f]{17})$", var.vpc_id))
    error_message = "The VPC id must look like vpc- followed by 8 or 17 hexadecimal digits."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the NLB and the Auto Scaling Group, ideally one per availability zone of the mirror sources."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-([0-9a-f]{8}|[0-9a-f]{17})$", id))])
    error_message = "Give at least one subnet; each id must look like subnet- followed by 8 or 17 hexadecimal digits."
  }
}

variable "source_cidr_blocks" {
  description = "Where the mirrored VXLAN comes from: the NLB keeps the mirror sources' addresses, so these are the CIDRs of the mirrored ENIs. Empty: the VPC's CIDRs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.source_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Each entry must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "status_cidr_blocks" {
  description = "Who may reach the status port (/livez for the NLB's health checks, /readyz and /healthz, /metrics for Prometheus). Empty: the VPC's CIDRs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.status_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Each entry must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "upstream_cidr_blocks" {
  description = "Where the upstream (the WAF's load balancer) lives, for the nodes' egress rule. Empty: the VPC's CIDRs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.upstream_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Each entry must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "instance_type" {
  description = "Instance type of the nodes. c5n (ENA, up to 25 Gbit/s on c5n.large bursts) is the reference; see the README for XDP driver mode on ENA."
  type        = string
  default     = "c5n.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance type must look like c5n.large."
  }
}

variable "architecture" {
  description = "CPU architecture of the instance type and of the release: x86_64 or arm64 (picks the Amazon Linux 2023 image when ami_id is empty)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "The architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI of the nodes. Empty: the latest Amazon Linux 2023 image (SSM parameter), which rolls the group whenever AWS publishes a new one; pin an id to roll on your schedule. The image needs bash, tar, sha256sum, systemd, iproute2 and curl or the AWS CLI."
  type        = string
  default     = ""

  validation {
    condition     = var.ami_id == "" || can(regex("^ami-([0-9a-f]{8}|[0-9a-f]{17})$", var.ami_id))
    error_message = "The AMI id must be empty or look like ami- followed by 8 or 17 hexadecimal digits."
  }
}

variable "min_size" {
  description = "Fewest nodes in the Auto Scaling Group: the scaling policy never goes below it."
  type        = number
  default     = 2

  validation {
    condition     = var.min_size >= 0 && floor(var.min_size) == var.min_size
    error_message = "min_size must be a whole number, 0 or more."
  }
}

variable "max_size" {
  description = "Most nodes in the Auto Scaling Group: the scaling policy never goes above it (and needs it above min_size)."
  type        = number
  default     = 4

  validation {
    condition     = var.max_size >= 1 && floor(var.max_size) == var.max_size
    error_message = "max_size must be a whole number, 1 or more."
  }
}

variable "desired_capacity" {
  description = "Nodes to run when scaling_metric is \"none\"; with a scaling policy the group starts at min_size and the policy sizes it. Each direction of a mirrored connection lands on one node (the NLB hashes the outer 5-tuple), so requests spread over every node."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_capacity >= 0 && floor(var.desired_capacity) == var.desired_capacity
    error_message = "desired_capacity must be a whole number, 0 or more."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before the NLB health check counts (download, install and start take well under a minute)."
  type        = number
  default     = 300

  validation {
    condition     = var.health_check_grace_period >= 0
    error_message = "The grace period cannot be negative."
  }
}

variable "root_volume_size" {
  description = "Size of the encrypted gp3 root volume in GiB."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384
    error_message = "The root volume must be 8 to 16384 GiB (Amazon Linux 2023 needs 8)."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key encrypting the root volume. null: the account's default EBS key."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for SSH. null: none (use SSM Session Manager instead)."
  type        = string
  default     = null
}

variable "ssh_cidr_blocks" {
  description = "Who may reach SSH (port 22). Empty: no SSH rule at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0" && c != "::/0"])
    error_message = "Each entry must be a CIDR block, and SSH is never opened to the whole internet."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so the nodes can be reached with Session Manager (and need no SSH)."
  type        = bool
  default     = true
}

variable "detailed_monitoring" {
  description = "One-minute CloudWatch metrics for the instances."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect the NLB from deletion (turn off before terraform destroy)."
  type        = bool
  default     = true
}

variable "release_s3_uri" {
  description = "The release tarball made by `cargo xtask dist`, as s3://BUCKET/KEY; the nodes get read access to that object only. Give this or release_url."
  type        = string
  default     = ""

  validation {
    condition     = var.release_s3_uri == "" || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/+=@:-]+$", var.release_s3_uri))
    error_message = "The release must be s3://BUCKET/KEY (a key without spaces or quotes), or empty."
  }
}

variable "release_url" {
  description = "The release tarball made by `cargo xtask dist`, as an https:// URL reachable from the nodes. Give this or release_s3_uri."
  type        = string
  default     = ""

  validation {
    condition     = var.release_url == "" || can(regex("^https://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+$", var.release_url))
    error_message = "The release URL must be https:// without quotes or spaces, or empty."
  }
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (the .sha256 file `cargo xtask dist` writes beside it). A download that does not match is not installed."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "The SHA-256 must be 64 lowercase hexadecimal digits."
  }
}

variable "release_kms_key_arn" {
  description = "KMS key the release object is encrypted with (SSE-KMS), if any: the nodes get kms:Decrypt on it."
  type        = string
  default     = null
}

variable "upstream_url" {
  description = "Where rebuilt requests are replayed: http://HOST:PORT of the WAF's internal load balancer (a name is resolved at every connect)."
  type        = string

  validation {
    condition     = can(regex("^http://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$", var.upstream_url)) || can(regex("^http://\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?/?$", var.upstream_url))
    error_message = "The upstream must be http://HOST or http://HOST:PORT (rebuilder replays plain HTTP; put TLS on the WAF's side)."
  }
}

variable "vnis" {
  description = "Only rebuild traffic of these mirror sessions' VNIs. Empty: every VNI."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for v in var.vnis : v >= 0 && v <= 16777215 && floor(v) == v])
    error_message = "Each VNI must be a whole number from 0 to 16777215."
  }
}

variable "server_ports" {
  description = "Ports the mirrored servers listen on: decides which side is the client for connections picked up without their SYN. Empty: the content decides."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for p in var.server_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Each port must be a whole number from 1 to 65535."
  }
}

variable "client_ip_header" {
  description = "Header carrying the original client IP in replayed requests (appended to an existing one, as proxies do). Empty: none added."
  type        = string
  default     = "X-Forwarded-For"

  validation {
    condition     = var.client_ip_header == "" || can(regex("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", var.client_ip_header))
    error_message = "The header name must be an HTTP token (letters, digits, and !#$%&'*+-.^_`|~), or empty."
  }
}

variable "vni_header" {
  description = "Header carrying the mirror session's VNI in replayed requests. Empty: none added."
  type        = string
  default     = ""

  validation {
    condition     = var.vni_header == "" || can(regex("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", var.vni_header))
    error_message = "The header name must be an HTTP token (letters, digits, and !#$%&'*+-.^_`|~), or empty."
  }
}

variable "memory_budget" {
  description = "The rebuilder process's whole memory (memory_budget), e.g. 1GiB: its own part, the capture's buffers, output queue and flows; over it flows are evicted and counted. Its peak RSS stays under this."
  type        = string
  default     = "1GiB"

  validation {
    condition     = can(regex("^[0-9]+(B|KiB|MiB|GiB)$", var.memory_budget))
    error_message = "The budget must be a whole number with B, KiB, MiB or GiB, e.g. 1GiB."
  }
}

variable "status_port" {
  description = "Port of the status server: the NLB health check asks GET /livez there, Prometheus scrapes /metrics."
  type        = number
  default     = 9479

  validation {
    condition     = var.status_port >= 1 && var.status_port <= 65535 && var.status_port != 4789 && floor(var.status_port) == var.status_port
    error_message = "The status port must be a whole number from 1 to 65535, other than 4789."
  }
}

variable "log_format" {
  description = "Log format on the journal: json or human."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "human"], var.log_format)
    error_message = "The log format must be json or human."
  }
}

variable "xdp_mode" {
  description = "How the nodes capture. generic (default): XDP in generic mode, interface MTU left at 9001, so everything the NLB delivers arrives: source frames up to 8500 bytes whole (the NLB target's packet length), larger ones cut at 8500 and counted as gaps. native: XDP in ENA's driver mode, cheaper per packet, which needs the interface at MTU 3498 and half its combined channels (user data sets both); then VXLAN packets over 3498 bytes (source frames over 3462) do not fit one receive buffer and ENA drops them before the program sees them, counted in rebuilder_xdp_driver_dropped_packets_total. off: the UDP socket input, no XDP, same sizes as generic."
  type        = string
  default     = "generic"

  validation {
    condition     = contains(["generic", "native", "off"], var.xdp_mode)
    error_message = "xdp_mode must be generic, native or off."
  }
}

variable "capture_interface" {
  description = "Interface receiving the NLB's traffic: the primary interface, ens5 on Nitro instances running Amazon Linux 2023."
  type        = string
  default     = "ens5"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,15}$", var.capture_interface))
    error_message = "The interface name must be 1 to 15 letters, digits, '_', '.' or '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource (and to the instances and their volumes)."
  type        = map(string)
  default     = {}
}

variable "scaling_metric" {
  description = "What the Auto Scaling Group's target-tracking policy follows: cpu (ASGAverageCPUUtilization, one-minute data; the default), network_packets_in (the group's average NetworkPacketsIn per instance, published every five minutes) or none (a fixed desired_capacity)."
  type        = string
  default     = "cpu"

  validation {
    condition     = contains(["cpu", "network_packets_in", "none"], var.scaling_metric)
    error_message = "scaling_metric must be cpu, network_packets_in or none."
  }
}

variable "scaling_target" {
  description = "Target of the scaling policy: average CPU percent for cpu (60 leaves a node room for bursts before its ring buffer fills), average packets per instance per five-minute period for network_packets_in."
  type        = number
  default     = 60

  validation {
    condition     = var.scaling_target > 0
    error_message = "scaling_target must be above 0 (a CPU percent up to 100 for cpu, packets per period for network_packets_in)."
  }
}

variable "scaling_warmup" {
  description = "Seconds a new node needs before its metrics count in the group's average (release download, install and start take well under a minute)."
  type        = number
  default     = 120

  validation {
    condition     = var.scaling_warmup >= 0 && floor(var.scaling_warmup) == var.scaling_warmup
    error_message = "scaling_warmup must be a whole number of seconds, 0 or more."
  }
}

variable "scale_in" {
  description = "Let the policy remove nodes when load falls. A removed node takes its flows' in-flight requests with it (counted as gaps on the node their flows move to); false only ever adds nodes."
  type        = bool
  default     = true
}

variable "alarms" {
  description = "Create CloudWatch alarms on the target group: unhealthy targets for 3 minutes, no healthy target for 2."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or clears (SNS topics, for example). Empty: the alarms only show in CloudWatch."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alarm_actions : can(regex("^arn:aws[a-z-]*:", a))])
    error_message = "Each alarm action must be an ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC, ...)."
  }
}

variable "cloudwatch_metrics" {
  description = "Install the CloudWatch agent on the nodes and have it scrape /metrics (Prometheus) into CloudWatch metrics under cloudwatch_namespace, with dimensions Group (the name) and InstanceId. Off by default: custom metrics are billed per metric."
  type        = bool
  default     = false
}

variable "cloudwatch_namespace" {
  description = "CloudWatch namespace of the metrics the agent publishes; the nodes may write to this namespace only."
  type        = string
  default     = "Rebuilder"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.cloudwatch_namespace)) && !startswith(var.cloudwatch_namespace, "AWS/")
    error_message = "The namespace must be 1 to 255 letters, digits or . _ / # : -, and not start with AWS/."
  }
}

variable "cloudwatch_metric_names" {
  description = "Which of rebuilder's Prometheus metrics (full names, as /metrics shows them) the agent publishes to CloudWatch: each one is a billed custom metric per dimension set."
  type        = list(string)
  default = [
    "rebuilder_ready",
    "rebuilder_live",
    "rebuilder_requests_rebuilt_total",
    "rebuilder_upstream_replayed_total",
    "rebuilder_requests_lost_total",
    "rebuilder_output_dropped_total",
    "rebuilder_upstream_errors_total",
    "rebuilder_packets_total",
    "rebuilder_xdp_packets_total",
    "rebuilder_xdp_driver_dropped_packets_total",
  ]

  validation {
    condition     = alltrue([for m in var.cloudwatch_metric_names : can(regex("^rebuilder_[a-z0-9_]+$", m))])
    error_message = "Each metric name must be one of rebuilder's: rebuilder_ followed by lowercase letters, digits and underscores."
  }
}

variable "ship_logs" {
  description = "Ship the service's journal to CloudWatch Logs (log group /rebuilder/NAME, one stream per instance): rsyslog copies the rebuilder unit's lines to /var/log/rebuilder/rebuilder.log (rotated daily) and the CloudWatch agent sends them."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the log group (also the Prometheus scrape events of cloudwatch_metrics)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "CloudWatch Logs retention must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653 days."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key encrypting the log group. null: CloudWatch Logs' own encryption."
  type        = string
  default     = null
}
