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
