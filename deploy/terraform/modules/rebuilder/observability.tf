# Scaling, alarms and the CloudWatch agent: what a team running the nodes watches them with.

locals {
  # Liveness: the process, its capture threads and workers are beating. Never readiness (the
  # upstream), see the target group.
  health_check_path = "/livez"

  scaling_enabled = var.scaling_metric != "none"

  # CPU is the default signal: whatever bounds a node (per-packet work in XDP or the socket
  # reader, per-byte work in reassembly and replay) shows as CPU, and EC2 publishes
  # CPUUtilization every minute with detailed monitoring. Packets in is the direct measure of
  # mirrored load, but EC2 publishes NetworkPacketsIn at five-minute granularity only (basic
  # monitoring), so the policy reacts slower.
  scaling_cpu = var.scaling_metric == "cpu"

  cloudwatch_agent_enabled = var.cloudwatch_metrics || var.ship_logs
  log_group_name           = "/rebuilder/${var.name}"
  # Where the user data makes rsyslog copy the service's journal (one JSON line per event with
  # log_format json), for the agent to ship.
  log_file = "/var/log/rebuilder/rebuilder.log"

  # The CloudWatch agent's own configuration (amazon-cloudwatch-agent.json): Prometheus scrape
  # of /metrics turned into CloudWatch metrics through embedded metric format, and the log file.
  cloudwatch_agent = {
    agent = {
      metrics_collection_interval = 60
      logfile                     = "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log"
    }
    logs = merge(
      var.ship_logs ? {
        logs_collected = {
          files = {
            collect_list = [{
              file_path         = local.log_file
              log_group_name    = local.log_group_name
              log_stream_name   = "{instance_id}/rebuilder"
              retention_in_days = var.log_retention_days
            }]
          }
        }
      } : {},
      var.cloudwatch_metrics ? {
        metrics_collected = {
          prometheus = {
            log_group_name         = local.log_group_name
            prometheus_config_path = "/opt/aws/amazon-cloudwatch-agent/etc/rebuilder-prometheus.yaml"
            emf_processor = {
              metric_namespace = var.cloudwatch_namespace
              metric_declaration = [{
                source_labels    = ["job"]
                label_matcher    = "^rebuilder$"
                dimensions       = [["Group"], ["Group", "InstanceId"]]
                metric_selectors = [for m in var.cloudwatch_metric_names : "^${m}$"]
              }]
            }
          }
        }
        force_flush_interval = 15
      } : {},
    )
  }
  cloudwatch_agent_config = local.cloudwatch_agent_enabled ? jsonencode(local.cloudwatch_agent) : ""

  # The agent's Prometheus scrape configuration: this node's own status port. Its labels become
  # the EMF dimensions above (the user data puts the instance id in at boot).
  cloudwatch_prometheus_config = var.cloudwatch_metrics ? templatefile("${path.module}/templates/cloudwatch-prometheus.yaml.tftpl", {
    status_port = var.status_port
    group       = var.name
  }) : ""

  # For a Prometheus server of the user's own in the VPC: EC2 service discovery of this group's
  # running instances, on their private addresses.
  prometheus_scrape_config = yamlencode({
    job_name        = "rebuilder"
    scrape_interval = "15s"
    metrics_path    = "/metrics"
    ec2_sd_configs = [{
      region = data.aws_region.current.name
      port   = var.status_port
      filters = [
        { name = "tag:aws:autoscaling:groupName", values = [aws_autoscaling_group.this.name] },
        { name = "instance-state-name", values = ["running"] },
      ]
    }]
    relabel_configs = [
      { source_labels = ["__meta_ec2_instance_id"], target_label = "instance" },
      { source_labels = ["__meta_ec2_availability_zone"], target_label = "zone" },
    ]
  })

  alarm_dimensions = {
    TargetGroup  = aws_lb_target_group.vxlan.arn_suffix
    LoadBalancer = aws_lb.this.arn_suffix
  }
}

# ---------------------------------------------------------------------------------------------
# Scaling: target tracking keeps the group's average at the target, between min_size and
# max_size. A node added takes new mirrored connections (each one's outer 5-tuple is hashed
# anew); a node removed takes its flows along, so requests in flight there are lost (counted as
# gaps wherever those flows land next).

resource "aws_autoscaling_policy" "target_tracking" {
  count = local.scaling_enabled ? 1 : 0

  name                      = "${var.name}-${var.scaling_metric}"
  autoscaling_group_name    = aws_autoscaling_group.this.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.scaling_warmup

  target_tracking_configuration {
    target_value     = var.scaling_target
    disable_scale_in = !var.scale_in

    dynamic "predefined_metric_specification" {
      for_each = local.scaling_cpu ? ["cpu"] : []
      content {
        predefined_metric_type = "ASGAverageCPUUtilization"
      }
    }

    dynamic "customized_metric_specification" {
      for_each = local.scaling_cpu ? [] : ["packets"]
      content {
        namespace   = "AWS/EC2"
        metric_name = "NetworkPacketsIn"
        statistic   = "Average"
        metric_dimension {
          name  = "AutoScalingGroupName"
          value = aws_autoscaling_group.this.name
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.min_size < var.max_size
      error_message = "A scaling policy needs room: min_size (${var.min_size}) must be below max_size (${var.max_size}); set scaling_metric = \"none\" for a fixed size."
    }
    precondition {
      condition     = !local.scaling_cpu || var.scaling_target <= 100
      error_message = "With scaling_metric = \"cpu\", scaling_target is a CPU percentage: 1 to 100, not ${var.scaling_target}."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Alarms on the target group (namespace AWS/NetworkELB, one-minute data points).

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  count = var.alarms ? 1 : 0

  alarm_name          = "${var.name}-unhealthy-targets"
  alarm_description   = "rebuilder nodes failing the NLB health check (GET /livez on the status port) for 3 minutes: the process or its capture/worker threads stopped; the ASG replaces such nodes."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.alarm_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "no_healthy_targets" {
  count = var.alarms ? 1 : 0

  alarm_name          = "${var.name}-no-healthy-targets"
  alarm_description   = "No healthy rebuilder node behind the NLB for 2 minutes: mirrored traffic is not being rebuilt (the NLB fails open to unhealthy targets, which may be dead)."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.alarm_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  # The NLB stops publishing the metric when the group has no targets at all.
  treat_missing_data = "breaching"
  alarm_actions      = var.alarm_actions
  ok_actions         = var.alarm_actions

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# CloudWatch agent: log group and the permissions to write it and the metrics namespace.

resource "aws_cloudwatch_log_group" "this" {
  count = local.cloudwatch_agent_enabled ? 1 : 0

  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = local.tags
}

data "aws_iam_policy_document" "cloudwatch" {
  count = local.cloudwatch_agent_enabled ? 1 : 0

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.this[0].arn}:*"]
  }

  dynamic "statement" {
    for_each = var.cloudwatch_metrics ? [var.cloudwatch_namespace] : []
    content {
      sid = "PutMetrics"
      # PutMetricData has no resource to scope to; the namespace condition does it.
      actions   = ["cloudwatch:PutMetricData"]
      resources = ["*"]
      condition {
        test     = "StringEquals"
        variable = "cloudwatch:namespace"
        values   = [statement.value]
      }
    }
  }

}

resource "aws_iam_role_policy" "cloudwatch" {
  count = local.cloudwatch_agent_enabled ? 1 : 0

  name_prefix = "cloudwatch-agent-"
  role        = aws_iam_role.this.id
  policy      = data.aws_iam_policy_document.cloudwatch[0].json
}
