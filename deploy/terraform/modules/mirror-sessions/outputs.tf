output "filter_id" {
  description = "ID of the traffic mirror filter."
  value       = aws_ec2_traffic_mirror_filter.this.id
}

output "target_id" {
  description = "ID of the traffic mirror target (the NLB)."
  value       = aws_ec2_traffic_mirror_target.this.id
}

output "session_ids" {
  description = "Traffic mirror session ID for each source ENI."
  value       = { for eni, session in aws_ec2_traffic_mirror_session.this : eni => session.id }
}

output "vnis" {
  description = "VNI of each session (the one asked for, or the one AWS chose)."
  value       = { for eni, session in aws_ec2_traffic_mirror_session.this : eni => session.virtual_network_id }
}

output "rule_counts" {
  description = "Filter rules per direction (AWS allows 10 per filter, both directions together)."
  value       = local.rule_counts
}
