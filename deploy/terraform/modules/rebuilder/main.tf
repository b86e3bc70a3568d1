# rebuilder nodes behind an internal NLB: the NLB takes the mirrored VXLAN on UDP 4789 and
# spreads it by 5-tuple hash over an Auto Scaling Group whose health is rebuilder's liveness
# (/livez); each node replays the requests it rebuilds to the upstream WAF. The group scales on
# CPU (or packets in), CloudWatch alarms watch the target group's health, and a CloudWatch agent
# can ship the nodes' /metrics and logs (observability.tf).

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == "" ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

data "aws_ami" "this" {
  filter {
    name   = "image-id"
    values = [local.ami_id]
  }
}

locals {
  ami_id = var.ami_id != "" ? var.ami_id : nonsensitive(data.aws_ssm_parameter.al2023[0].value)

  vpc_cidr_blocks      = [for a in data.aws_vpc.this.cidr_block_associations : a.cidr_block]
  source_cidr_blocks   = length(var.source_cidr_blocks) > 0 ? var.source_cidr_blocks : local.vpc_cidr_blocks
  status_cidr_blocks   = length(var.status_cidr_blocks) > 0 ? var.status_cidr_blocks : local.vpc_cidr_blocks
  upstream_cidr_blocks = length(var.upstream_cidr_blocks) > 0 ? var.upstream_cidr_blocks : local.vpc_cidr_blocks
  upstream_port        = try(tonumber(regex("^http://(?:\\[[^]]+\\]|[^:/]+):([0-9]+)", var.upstream_url)[0]), 80)

  release_from_s3    = var.release_s3_uri != ""
  release_s3_parts   = local.release_from_s3 ? regex("^s3://([^/]+)/(.+)$", var.release_s3_uri) : ["", ""]
  release_object_arn = "arn:${data.aws_partition.current.partition}:s3:::${local.release_s3_parts[0]}/${local.release_s3_parts[1]}"

  # The module speaks of ENA's "native" mode; rebuilder's setting calls it "driver".
  xdp_attach_mode = { generic = "generic", native = "driver", off = "" }[var.xdp_mode]

  # `cargo xtask dist` names its tarballs after the ELF machine (rebuilder-VERSION-x86_64-linux,
  # rebuilder-VERSION-aarch64-linux); EC2 and the AMI name the same machines x86_64 and arm64.
  release_arch = { x86_64 = "x86_64", arm64 = "aarch64" }[var.architecture]
  # The release's file name, when it follows dist's pattern, says which machine it is built for.
  release_file      = try(regex("[^/?#]+$", local.release_from_s3 ? var.release_s3_uri : replace(var.release_url, "/[?#].*$/", "")), "")
  release_file_arch = try(regex("^rebuilder-.+-(x86_64|aarch64)-linux\\.tar\\.gz$", local.release_file)[0], "")

  config = templatefile("${path.module}/templates/rebuilder.toml.tftpl", {
    log_format        = var.log_format
    vnis              = var.vnis
    server_ports      = var.server_ports
    memory_budget     = var.memory_budget
    upstream_url      = var.upstream_url
    client_ip_header  = var.client_ip_header
    vni_header        = var.vni_header
    status_port       = var.status_port
    xdp_attach_mode   = local.xdp_attach_mode
    capture_interface = var.capture_interface
  })

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    config            = local.config
    release_s3_uri    = var.release_s3_uri
    release_url       = var.release_url
    release_sha256    = var.release_sha256
    xdp_mode          = var.xdp_mode
    capture_interface = var.capture_interface
    release_arch      = local.release_arch
    cloudwatch_agent  = local.cloudwatch_agent_config
    prometheus_scrape = local.cloudwatch_prometheus_config
    ship_logs         = var.ship_logs
  })

  tags = merge(var.tags, { Name = var.name })
}

# ---------------------------------------------------------------------------------------------
# Load balancer: VXLAN in on UDP 4789; health from rebuilder's liveness over HTTP (an NLB never
# health-checks a UDP target group over UDP).

resource "aws_lb" "this" {
  name                             = var.name
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection

  tags = local.tags
}

resource "aws_lb_target_group" "vxlan" {
  name        = "${var.name}-vxlan"
  port        = 4789
  protocol    = "UDP"
  target_type = "instance"
  vpc_id      = var.vpc_id

  # A node leaving the group stops receiving at once: its flows hash to the others.
  deregistration_delay   = 30
  connection_termination = true

  # /livez, not /readyz or /healthz: liveness is the process, its capture threads and workers
  # beating. Readiness also needs the upstream; with it here a WAF outage would fail every
  # target at once, and the ASG (health_check_type ELB) would replace the whole group for an
  # outage that new nodes cannot fix.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.status_port)
    path                = local.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 6
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "vxlan" {
  load_balancer_arn = aws_lb.this.arn
  port              = 4789
  protocol          = "UDP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.vxlan.arn
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# Security group: VXLAN from the mirror sources (the NLB keeps their addresses), the status
# port from the VPC; out, HTTPS (release, SSM, packages) and the upstream. No SSH unless asked.

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  description = "rebuilder nodes: VXLAN from mirror sources, status from the VPC"
  vpc_id      = var.vpc_id

  ingress {
    description = "VXLAN: mirrored traffic through the NLB"
    protocol    = "udp"
    from_port   = 4789
    to_port     = 4789
    cidr_blocks = local.source_cidr_blocks
  }

  ingress {
    description = "rebuilder status: /livez for NLB health checks, /metrics"
    protocol    = "tcp"
    from_port   = var.status_port
    to_port     = var.status_port
    cidr_blocks = local.status_cidr_blocks
  }

  dynamic "ingress" {
    for_each = length(var.ssh_cidr_blocks) > 0 ? [var.ssh_cidr_blocks] : []
    content {
      description = "SSH"
      protocol    = "tcp"
      from_port   = 22
      to_port     = 22
      cidr_blocks = ingress.value
    }
  }

  egress {
    description = "HTTPS: the release, SSM and package repositories"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "The upstream WAF"
    protocol    = "tcp"
    from_port   = local.upstream_port
    to_port     = local.upstream_port
    cidr_blocks = local.upstream_cidr_blocks
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

# ---------------------------------------------------------------------------------------------
# Instance profile: read the release object; Session Manager if asked.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-"
  description        = "rebuilder nodes"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = local.tags
}

data "aws_iam_policy_document" "release" {
  count = local.release_from_s3 ? 1 : 0

  statement {
    sid       = "ReadRelease"
    actions   = ["s3:GetObject"]
    resources = [local.release_object_arn]
  }

  dynamic "statement" {
    for_each = var.release_kms_key_arn == null ? [] : [var.release_kms_key_arn]
    content {
      sid       = "DecryptRelease"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "release" {
  count = local.release_from_s3 ? 1 : 0

  name_prefix = "read-release-"
  role        = aws_iam_role.this.id
  policy      = data.aws_iam_policy_document.release[0].json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enable_ssm ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.this.name

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# Nodes.

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-"
  description            = "rebuilder node"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  key_name               = var.key_name
  user_data              = base64encode(local.user_data)
  vpc_security_group_ids = [aws_security_group.this.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  block_device_mappings {
    device_name = data.aws_ami.this.root_device_name
    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.tags
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = (var.release_s3_uri == "") != (var.release_url == "")
      error_message = "Give exactly one of release_s3_uri and release_url."
    }
    precondition {
      condition     = data.aws_ami.this.architecture == var.architecture
      error_message = "The AMI is built for ${data.aws_ami.this.architecture}, but architecture is ${var.architecture}: the release and the image must match."
    }
    precondition {
      condition     = local.release_file_arch == "" || local.release_file_arch == local.release_arch
      error_message = "The release ${local.release_file} is built for ${local.release_file_arch}, but architecture ${var.architecture} needs a ${local.release_arch} release (cargo xtask dist names them rebuilder-VERSION-${local.release_arch}-linux.tar.gz)."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name_prefix = "${var.name}-"
  min_size    = var.min_size
  max_size    = var.max_size
  # With a scaling policy the policy owns the group's size (Terraform leaves it alone); without
  # one, desired_capacity is the size.
  desired_capacity          = local.scaling_enabled ? null : var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  target_group_arns         = [aws_lb_target_group.vxlan.arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # A new launch template version (settings, release, image) replaces the nodes a half at a
  # time, so the NLB always has healthy targets.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = local.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  lifecycle {
    precondition {
      condition     = var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
      error_message = "Need min_size <= desired_capacity <= max_size."
    }
  }
}
