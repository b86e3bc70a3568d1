variable "name" {
  description = "Name given to the filter, target and sessions (Name tag and descriptions)."
  type        = string
  default     = "rebuilder-mirror"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", var.name))
    error_message = "The name must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit."
  }
}

variable "network_interface_ids" {
  description = "Source ENIs to mirror (eni-...), one session each. Each ENI takes at most 3 sessions, across all tools mirroring it."
  type        = list(string)

  validation {
    condition     = alltrue([for id in var.network_interface_ids : can(regex("^eni-([0-9a-f]{8}|[0-9a-f]{17})$", id))])
    error_message = "Every network interface id must look like eni- followed by 8 or 17 hexadecimal digits."
  }
}

variable "target_nlb_arn" {
  description = "ARN of the Network Load Balancer receiving the mirrored traffic (UDP 4789), for example the `nlb_arn` output of the rebuilder module."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:loadbalancer/net/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$", var.target_nlb_arn))
    error_message = "The target must be a Network Load Balancer ARN: arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/net/NAME/ID."
  }
}

variable "vni" {
  description = "VXLAN network identifier carried by the mirrored packets (rebuilder can filter on it and add it to replayed requests). null: AWS picks a random, account-unique one."
  type        = number
  default     = null

  validation {
    condition     = var.vni == null ? true : (floor(var.vni) == var.vni && var.vni >= 0 && var.vni <= 16777215)
    error_message = "The VNI must be an integer from 0 to 16777215 (24 bits)."
  }
}

variable "session_number" {
  description = "Priority of the sessions on their ENIs (1 is evaluated first; the first session whose filter accepts a packet mirrors it)."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.session_number) == var.session_number && var.session_number >= 1 && var.session_number <= 32766
    error_message = "The session number must be an integer from 1 to 32766."
  }
}

variable "packet_length" {
  description = "Bytes of each packet to mirror, counted after the VXLAN header (the inner Ethernet frame). null: the most an NLB target takes, which AWS sets to 8500, so a 9001-MTU source's full-sized frames (9015 bytes) arrive cut at 8500 and rebuilder counts them as gaps; frames of up to 8500 bytes (IP packets up to 8486) arrive whole. A shorter length truncates on purpose and loses every request longer than it."
  type        = number
  default     = null

  validation {
    condition     = var.packet_length == null ? true : (floor(var.packet_length) == var.packet_length && var.packet_length >= 1 && var.packet_length <= 8500)
    error_message = "The packet length must be an integer from 1 to 8500 (the limit for a Network Load Balancer target), or null."
  }
}

variable "mirror_ingress" {
  description = "Mirror the traffic the ENIs receive (requests reaching a server's ENI)."
  type        = bool
  default     = true
}

variable "mirror_egress" {
  description = "Mirror the traffic the ENIs send (requests leaving a client's or a proxy's ENI). Mirroring both directions of a server doubles the mirrored bandwidth for responses rebuilder does not replay."
  type        = bool
  default     = false
}

variable "ingress_destination_port_ranges" {
  description = "Destination TCP port ranges accepted on received traffic, e.g. [{ from = 80, to = 80 }]. Empty: every TCP port."
  type = list(object({
    from = number
    to   = number
  }))
  default = []

  validation {
    condition     = alltrue([for r in var.ingress_destination_port_ranges : r.from >= 1 && r.to <= 65535 && r.from <= r.to && floor(r.from) == r.from && floor(r.to) == r.to])
    error_message = "Each port range needs 1 <= from <= to <= 65535, in whole numbers."
  }

  validation {
    condition     = length(var.ingress_destination_port_ranges) <= 10
    error_message = "At most 10 port ranges: a traffic mirror filter holds 10 rules in all, both directions together (the filter's precondition checks the exact total)."
  }
}

variable "egress_destination_port_ranges" {
  description = "Destination TCP port ranges accepted on sent traffic, e.g. [{ from = 80, to = 80 }]. Empty: every TCP port."
  type = list(object({
    from = number
    to   = number
  }))
  default = []

  validation {
    condition     = alltrue([for r in var.egress_destination_port_ranges : r.from >= 1 && r.to <= 65535 && r.from <= r.to && floor(r.from) == r.from && floor(r.to) == r.to])
    error_message = "Each port range needs 1 <= from <= to <= 65535, in whole numbers."
  }

  validation {
    condition     = length(var.egress_destination_port_ranges) <= 10
    error_message = "At most 10 port ranges: a traffic mirror filter holds 10 rules in all, both directions together (the filter's precondition checks the exact total)."
  }
}

variable "mirror_ipv6" {
  description = "Also mirror IPv6 traffic: every rule is then written twice (0.0.0.0/0 and ::/0), which halves the port ranges a direction can take."
  type        = bool
  default     = false
}

variable "mirror_dns" {
  description = "Also mirror DNS (UDP 53), including queries to the Amazon-provided resolver (network service amazon-dns). rebuilder ignores it; for other tools sharing the target."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
