output "nlb_arn" {
  description = "ARN of the internal NLB: the traffic mirror target (mirror-sessions' target_nlb_arn)."
  value       = aws_lb.this.arn
}

output "nlb_dns_name" {
  description = "DNS name of the internal NLB."
  value       = aws_lb.this.dns_name
}

output "target_group_arn" {
  description = "ARN of the UDP 4789 target group the nodes register in."
  value       = aws_lb_target_group.vxlan.arn
}

output "asg_name" {
  description = "Name of the Auto Scaling Group of rebuilder nodes."
  value       = aws_autoscaling_group.this.name
}

output "security_group_id" {
  description = "ID of the nodes' security group."
  value       = aws_security_group.this.id
}

output "iam_role_name" {
  description = "Name of the nodes' IAM role, to attach more policies (CloudWatch agent, ...)."
  value       = aws_iam_role.this.name
}

output "launch_template_id" {
  description = "ID of the nodes' launch template."
  value       = aws_launch_template.this.id
}

output "ami_id" {
  description = "AMI the nodes run."
  value       = local.ami_id
}

output "scaling_policy_arn" {
  description = "ARN of the target-tracking scaling policy (null with scaling_metric = \"none\")."
  value       = one(aws_autoscaling_policy.target_tracking[*].arn)
}

output "alarm_arns" {
  description = "ARNs of the CloudWatch alarms on the target group, by name (empty with alarms = false)."
  value = merge(
    { for a in aws_cloudwatch_metric_alarm.unhealthy_targets : a.alarm_name => a.arn },
    { for a in aws_cloudwatch_metric_alarm.no_healthy_targets : a.alarm_name => a.arn },
  )
}

output "log_group_name" {
  description = "CloudWatch Logs group of the nodes (null unless ship_logs or cloudwatch_metrics)."
  value       = one(aws_cloudwatch_log_group.this[*].name)
}

output "prometheus_scrape_config" {
  description = "A Prometheus scrape_configs entry (YAML) finding this group's nodes by EC2 service discovery, for a Prometheus server in the VPC (it needs ec2:DescribeInstances)."
  value       = local.prometheus_scrape_config
}
