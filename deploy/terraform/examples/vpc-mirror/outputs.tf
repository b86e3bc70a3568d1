output "mirrored_eni_ids" {
  description = "ENIs with a mirror session to rebuilder."
  value       = local.mirror_eni_ids
}

output "mirror_session_ids" {
  description = "Mirror session of each ENI."
  value       = module.mirror_sessions.session_ids
}

output "rebuilder_nlb_arn" {
  description = "The NLB receiving the mirrored traffic."
  value       = module.rebuilder.nlb_arn
}

output "rebuilder_asg_name" {
  description = "Auto Scaling Group of the rebuilder nodes (aws ssm start-session on one to look around)."
  value       = module.rebuilder.asg_name
}

output "rebuilder_target_group_arn" {
  description = "Target group whose health is rebuilder's liveness (/livez)."
  value       = module.rebuilder.target_group_arn
}

output "waf_endpoint" {
  description = "Where rebuilder replays the requests: the WAF's internal ALB."
  value       = module.waf.other.mirror_endpoint
}

output "waf_asg_name" {
  description = "Auto Scaling Group of the Wallarm nodes."
  value       = module.waf.asg.name
}
