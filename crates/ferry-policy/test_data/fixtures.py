#!/usr/bin/env python3
"""Writes the built-in rules' plan fixtures: test_data/rules/<RULE>/{fail,pass}.json + case.json.

Each case below is written by hand as the resources of a plan; `plan()` lays them out the way
`terraform show -json PLANFILE` does (format 1.2: planned_values, resource_changes,
prior_state, configuration with expressions and references, module_calls), because provider
plugins cannot be downloaded here to produce real AWS plans. Links that are unknown at plan
time are written as configuration `references` only, like Terraform does.

Run from the crate directory: python3 test_data/fixtures.py (the JSON files are committed;
tests/fixtures.rs reads them).
"""
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
PROVIDER = "registry.terraform.io/hashicorp/aws"


def ref(*refs):
    """An expression referring to other objects: ref("aws_s3_bucket.b.id")."""
    out = []
    for r in refs:
        out.append(r)
        parts = r.split(".")
        base = ".".join(parts[:3] if parts[0] == "data" else parts[:2])
        if base != r and base not in out:
            out.append(base)
    return {"references": out}


def res(address, after=None, before=None, actions=("create",), unknown=None, expr=None,
        index=None, sensitive=None, reason=None):
    """One resource instance. `after`/`before` are values; `unknown` lists attributes known
    only after apply; `expr` overrides configuration expressions per attribute."""
    mode = "data" if ".data." in "." + address or address.startswith("data.") else "managed"
    parts = address.split(".")
    module = None
    while parts and parts[0] == "module":
        module = (module + "." if module else "") + parts[0] + "." + parts[1]
        parts = parts[2:]
    if parts[0] == "data":
        parts = parts[1:]
    rtype, name = parts[0], parts[1].split("[")[0]
    if after is not None:
        # Terraform leaves attributes that are unknown until apply out of `after`.
        after = {k: v for k, v in after.items() if k not in (unknown or [])}
    return dict(address=address, mode=mode, type=rtype, name=name, module=module,
                after=after, before=before, actions=list(actions), unknown=unknown or [],
                expr=expr or {}, index=index, sensitive=sensitive or {}, reason=reason)


def data(address, values, expr=None, deferred=False):
    """A data source: read during the plan (values in prior_state) or deferred to apply."""
    r = res(address, after=None if deferred else values, expr=expr,
            actions=("read",) if deferred else ())
    r["deferred"] = deferred
    r["config_values"] = values
    return r


def unchanged(address, values, expr=None):
    return res(address, after=values, before=values, actions=("no-op",), expr=expr)


def derive_expressions(values):
    out = {}
    for k, v in (values or {}).items():
        if k in ("id", "arn", "tags_all"):
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out[k] = [derive_expressions(x) for x in v]
        elif v is not None:
            out[k] = {"constant_value": v}
    return out


def config_address(r):
    local = ("data." if r["mode"] == "data" else "") + r["type"] + "." + r["name"]
    return local


def plan(*resources, variables=None, default_tags=None):
    changes, planned, prior, configs = [], {}, {}, {}
    for r in resources:
        base = {"address": r["address"], "mode": r["mode"], "type": r["type"], "name": r["name"]}
        if r["module"]:
            base_mod = {"module_address": r["module"]}
        else:
            base_mod = {}
        if r["index"] is not None:
            base["index"] = r["index"]
        key = r["module"] or ""
        if r["mode"] == "managed" or r.get("deferred"):
            change = {
                "actions": r["actions"],
                "before": r["before"],
                "after": None if r["actions"] == ["delete"] else r["after"],
                "after_unknown": {k: True for k in r["unknown"]},
                "before_sensitive": False if r["before"] is None else {},
                "after_sensitive": r["sensitive"],
            }
            rc = dict(base, **base_mod, provider_name=PROVIDER, change=change)
            if r["reason"]:
                rc["action_reason"] = r["reason"]
            changes.append(rc)
        if r["mode"] == "managed" and r["actions"] != ["delete"]:
            planned.setdefault(key, []).append(dict(
                base, provider_name=PROVIDER, schema_version=0,
                values=r["after"] or {}, sensitive_values={}))
        prior_values = r["before"] if r["mode"] == "managed" else (
            None if r.get("deferred") else r["after"])
        if prior_values is not None:
            prior.setdefault(key, []).append(dict(
                base, provider_name=PROVIDER, schema_version=0,
                values=prior_values, sensitive_values={}))
        cfg_vals = r.get("config_values") if r["mode"] == "data" else (r["after"] or r["before"])
        exprs = derive_expressions(cfg_vals)
        exprs.update(r["expr"])
        caddr = config_address(r)
        entry = {"address": caddr, "mode": r["mode"], "type": r["type"], "name": r["name"],
                 "provider_config_key": "aws", "expressions": exprs, "schema_version": 0}
        if r["index"] is not None:
            entry["count_expression"] = {"constant_value": 2}
        configs.setdefault(key, {})[caddr] = entry

    def state_module(items):
        root = {"resources": items.get("", [])}
        children = [{"address": k, "resources": v} for k, v in sorted(items.items()) if k]
        if children:
            root["child_modules"] = children
        return root

    root_cfg = {"resources": list(configs.get("", {}).values())}
    for key, entries in sorted(configs.items()):
        if not key:
            continue
        name = key.split(".")[1]
        root_cfg.setdefault("module_calls", {})[name] = {
            "source": "./modules/" + name, "module": {"resources": list(entries.values())}}
    if variables:
        root_cfg["variables"] = variables
    provider = {"name": "aws", "full_name": PROVIDER,
                "expressions": {"region": {"constant_value": "eu-west-1"}}}
    if default_tags:
        provider["expressions"]["default_tags"] = [{"tags": {"constant_value": default_tags}}]
    doc = {
        "format_version": "1.2",
        "terraform_version": "1.11.0",
        "planned_values": {"root_module": state_module(planned)},
        "resource_changes": changes,
        "configuration": {"provider_config": {"aws": provider}, "root_module": root_cfg},
        "timestamp": "2026-11-26T12:00:00Z",
        "applyable": True,
        "complete": True,
        "errored": False,
    }
    if prior:
        doc["prior_state"] = {"format_version": "1.0", "terraform_version": "1.11.0",
                              "values": {"root_module": state_module(prior)}}
    return doc


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions, resources="*", **extra):
    s = {"Effect": "Allow", "Action": actions}
    if resources is not None:
        s["Resource"] = resources
    s.update(extra)
    return s


def bucket(address, name, actions=("create",), tags=None, before=None):
    after = {"bucket": name, "force_destroy": False, "tags": tags or {}, "tags_all": tags or {}}
    return res(address, after=after, before=before, actions=actions, unknown=["id", "arn"])


def companion(address, bucket_ref, values, actions=("create",), known_bucket=None):
    after = dict(values, bucket=known_bucket)
    unknown = ["id"] + ([] if known_bucket else ["bucket"])
    return res(address, after=after, actions=actions, unknown=unknown,
               expr={} if known_bucket else {"bucket": ref(bucket_ref + ".id")})


def sse(algorithm="AES256", key=None):
    return {"rule": [{"apply_server_side_encryption_by_default": [
        {"sse_algorithm": algorithm, "kms_master_key_id": key}], "bucket_key_enabled": True}],
        "expected_bucket_owner": None}


def pab(**flags):
    out = {k: True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                             "restrict_public_buckets")}
    out.update(flags)
    return out


CASES = {}


def case(rule, fail, ok, expect, context=None, config=None, severity=None, secrets=None):
    CASES[rule] = dict(fail=fail, ok=ok, expect=expect, context=context or {},
                       config=config or {}, severity=severity, secrets=secrets or [])


# IAM ---------------------------------------------------------------------------------------
case("FERRY-IAM-001",
     plan(res("aws_iam_policy.admin", after={"name": "admin", "policy": policy(allow("s3:*", "arn:aws:s3:::acme-data/*"))}),
          res("aws_iam_role_policy.app", after={"name": "app", "role": "app"}, unknown=["policy"],
              expr={"policy": ref("data.aws_iam_policy_document.app.json")}),
          data("data.aws_iam_policy_document.app", {"statement": [
              {"effect": "Allow", "actions": ["*"], "resources": ["arn:aws:s3:::acme-data"]}]}, deferred=True)),
     plan(res("aws_iam_policy.reader", after={"name": "reader", "policy": policy(allow(["s3:GetObject"], "arn:aws:s3:::acme-data/*"))}),
          res("aws_iam_role_policy.app", after={"name": "app", "role": "app"}, unknown=["policy"],
              expr={"policy": ref("data.aws_iam_policy_document.app.json")}),
          data("data.aws_iam_policy_document.app", {"statement": [
              {"effect": "Allow", "actions": ["dynamodb:GetItem"], "resources": ["arn:aws:dynamodb:eu-west-1:111111111111:table/t"]}]})),
     ["aws_iam_policy.admin", "aws_iam_role_policy.app"])

case("FERRY-IAM-002",
     plan(res("aws_iam_policy.writer", after={"name": "writer", "policy": policy(allow(["s3:PutObject", "s3:GetObject"]))})),
     plan(res("aws_iam_policy.writer", after={"name": "writer", "policy": policy(
         allow(["s3:PutObject"], "arn:aws:s3:::acme-data/*"), allow(["ec2:Describe*"]))})),
     ["aws_iam_policy.writer"])

case("FERRY-IAM-003",
     plan(res("aws_iam_role.ci", after={"name": "ci", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"Service": "codebuild.amazonaws.com"})),
                                        "inline_policy": [{"name": "pass", "policy": policy(allow("iam:PassRole", "arn:aws:iam::111111111111:role/app"))}]},
              unknown=["arn", "id"])),
     plan(res("aws_iam_role.ci", after={"name": "ci", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"Service": "codebuild.amazonaws.com"})),
                                        "inline_policy": [{"name": "pass", "policy": policy(allow("iam:PassRole", "arn:aws:iam::111111111111:role/app",
                                                                                              Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}))}]},
              unknown=["arn", "id"])),
     ["aws_iam_role.ci"])

case("FERRY-IAM-004",
     plan(res("aws_iam_role.open", after={"name": "open", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"AWS": "*"}))})),
     plan(res("aws_iam_role.open", after={"name": "open", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"Service": "ec2.amazonaws.com"}))}),
          res("aws_iam_role.org", after={"name": "org", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"AWS": "*"},
                                                                                          Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}))})),
     ["aws_iam_role.open"])

case("FERRY-IAM-005",
     plan(data("data.aws_caller_identity.current", {"account_id": "111111111111", "arn": "arn:aws:iam::111111111111:user/ci", "id": "111111111111", "user_id": "AIDA"}),
          res("aws_iam_role.vendor", after={"name": "vendor", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"AWS": "arn:aws:iam::999999999999:root"}))})),
     plan(data("data.aws_caller_identity.current", {"account_id": "111111111111", "arn": "arn:aws:iam::111111111111:user/ci", "id": "111111111111", "user_id": "AIDA"}),
          res("aws_iam_role.vendor", after={"name": "vendor"}, unknown=["assume_role_policy"],
              expr={"assume_role_policy": ref("data.aws_iam_policy_document.vendor_trust.json")}),
          data("data.aws_iam_policy_document.vendor_trust", {"statement": [
              {"effect": "Allow", "actions": ["sts:AssumeRole"],
               "principals": [{"type": "AWS", "identifiers": ["arn:aws:iam::999999999999:root"]}],
               "condition": [{"test": "StringEquals", "variable": "sts:ExternalId", "values": ["acme-7"]}]}]}),
          res("aws_iam_role.own", after={"name": "own", "assume_role_policy": policy(allow("sts:AssumeRole", None, Principal={"AWS": "arn:aws:iam::111111111111:root"}))})),
     ["aws_iam_role.vendor"])

# S3 ----------------------------------------------------------------------------------------
case("FERRY-S3-001",
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          bucket("aws_s3_bucket.other", "acme-other"),
          companion("aws_s3_bucket_server_side_encryption_configuration.other", "aws_s3_bucket.other", sse())),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_server_side_encryption_configuration.data", "aws_s3_bucket.data", sse()),
          # An updated bucket whose (unchanged) encryption resource names it by value.
          bucket("aws_s3_bucket.logs", "acme-logs", actions=("update",), tags={"Owner": "ops"},
                 before={"bucket": "acme-logs", "id": "acme-logs", "tags": {}, "tags_all": {}}),
          unchanged("aws_s3_bucket_server_side_encryption_configuration.logs", dict(sse(), bucket="acme-logs", id="acme-logs"))),
     ["aws_s3_bucket.data"])

case("FERRY-S3-002",
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_server_side_encryption_configuration.data", "aws_s3_bucket.data", sse("AES256"))),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          res("aws_kms_key.s3", after={"enable_key_rotation": True}, unknown=["arn", "id", "key_id"]),
          res("aws_s3_bucket_server_side_encryption_configuration.data", after=dict(sse("aws:kms", None), bucket=None),
              unknown=["bucket", "id"],
              expr={"bucket": ref("aws_s3_bucket.data.id"),
                    "rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": {"constant_value": "aws:kms"},
                                                                           "kms_master_key_id": ref("aws_kms_key.s3.arn")}]}]})),
     ["aws_s3_bucket.data"],
     context={"environment": "prod", "protected": True},
     config={"require_customer_managed_keys": "protected"})

case("FERRY-S3-003",
     plan(bucket("aws_s3_bucket.a", "acme-a"),
          bucket("aws_s3_bucket.b", "acme-b"),
          companion("aws_s3_bucket_public_access_block.b", "aws_s3_bucket.b", pab(block_public_policy=False))),
     plan(bucket("aws_s3_bucket.a", "acme-a"),
          companion("aws_s3_bucket_public_access_block.a", "aws_s3_bucket.a", pab())),
     ["aws_s3_bucket.a", "aws_s3_bucket.b"])

case("FERRY-S3-004",
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_versioning.data", "aws_s3_bucket.data", {"versioning_configuration": [{"status": "Suspended", "mfa_delete": None}]})),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_versioning.data", "aws_s3_bucket.data", {"versioning_configuration": [{"status": "Enabled", "mfa_delete": None}]})),
     ["aws_s3_bucket.data"])

case("FERRY-S3-005",
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_lifecycle_configuration.data", "aws_s3_bucket.data", {"rule": [
              {"id": "expire", "status": "Enabled", "expiration": [{"days": 90}], "noncurrent_version_expiration": [], "noncurrent_version_transition": []}]})),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_lifecycle_configuration.data", "aws_s3_bucket.data", {"rule": [
              {"id": "noncurrent", "status": "Enabled", "expiration": [], "noncurrent_version_expiration": [{"noncurrent_days": 30}], "noncurrent_version_transition": []}]})),
     ["aws_s3_bucket.data"])

case("FERRY-S3-006",
     plan(bucket("aws_s3_bucket.data", "acme-data")),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          bucket("aws_s3_bucket.logs", "acme-logs"),
          res("aws_s3_bucket_logging.data", after={"target_prefix": "data/"}, unknown=["bucket", "target_bucket", "id"],
              expr={"bucket": ref("aws_s3_bucket.data.id"), "target_bucket": ref("aws_s3_bucket.logs.id")})),
     ["aws_s3_bucket.data"])

case("FERRY-S3-007",
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_versioning.data", "aws_s3_bucket.data", {"versioning_configuration": [{"status": "Enabled", "mfa_delete": "Disabled"}]})),
     plan(bucket("aws_s3_bucket.data", "acme-data"),
          companion("aws_s3_bucket_versioning.data", "aws_s3_bucket.data", {"mfa": "arn:aws:iam::111111111111:mfa/root 123456",
                                                                           "versioning_configuration": [{"status": "Enabled", "mfa_delete": "Enabled"}]})),
     ["aws_s3_bucket.data"])

case("FERRY-S3-008",
     plan(bucket("aws_s3_bucket.ledger", "acme-ledger", tags={"Criticality": "Critical"})),
     plan(bucket("aws_s3_bucket.ledger", "acme-ledger", tags={"Criticality": "critical"}),
          bucket("aws_s3_bucket.scratch", "acme-scratch", tags={"Criticality": "low"}),
          res("aws_s3_bucket_replication_configuration.ledger", after={"role": "arn:aws:iam::111111111111:role/replication",
                                                                       "rule": [{"id": "dr", "status": "Enabled", "destination": [{"bucket": "arn:aws:s3:::acme-ledger-dr"}]}]},
              unknown=["bucket", "id"], expr={"bucket": ref("aws_s3_bucket.ledger.id")})),
     ["aws_s3_bucket.ledger"])

# DynamoDB, logs, audit ---------------------------------------------------------------------
case("FERRY-DDB-001",
     plan(res("aws_dynamodb_table.orders", after={"name": "orders", "hash_key": "id", "billing_mode": "PAY_PER_REQUEST",
                                                  "point_in_time_recovery": [{"enabled": False}]})),
     plan(res("aws_dynamodb_table.orders", after={"name": "orders", "hash_key": "id", "billing_mode": "PAY_PER_REQUEST",
                                                  "point_in_time_recovery": [{"enabled": True}]})),
     ["aws_dynamodb_table.orders"])

case("FERRY-LOG-001",
     plan(res("aws_cloudwatch_log_group.app", after={"name": "/ecs/app", "retention_in_days": 0, "kms_key_id": None})),
     plan(res("aws_cloudwatch_log_group.app", after={"name": "/ecs/app", "retention_in_days": 30, "kms_key_id": None})),
     ["aws_cloudwatch_log_group.app"])

case("FERRY-LOG-002",
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs"})),
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs"}),
          unchanged("aws_cloudtrail.main", {"name": "main", "is_multi_region_trail": True, "enable_log_file_validation": True, "s3_bucket_name": "acme-trail"})),
     ["(configuration)"])

case("FERRY-LOG-003",
     plan(res("aws_cloudtrail.main", after={"name": "main", "is_multi_region_trail": False, "enable_log_file_validation": True, "s3_bucket_name": "acme-trail"})),
     plan(res("aws_cloudtrail.main", after={"name": "main", "is_multi_region_trail": True, "enable_log_file_validation": True, "s3_bucket_name": "acme-trail"})),
     ["aws_cloudtrail.main"])

case("FERRY-LOG-004",
     plan(res("aws_cloudtrail.main", after={"name": "main", "is_multi_region_trail": True, "enable_log_file_validation": False, "s3_bucket_name": "acme-trail"})),
     plan(res("aws_cloudtrail.main", after={"name": "main", "is_multi_region_trail": True, "enable_log_file_validation": True, "s3_bucket_name": "acme-trail"})),
     ["aws_cloudtrail.main"])

case("FERRY-LOG-005",
     plan(res("aws_vpc.main", after={"cidr_block": "10.0.0.0/16"}, unknown=["id", "arn"])),
     plan(res("aws_vpc.main", after={"cidr_block": "10.0.0.0/16"}, unknown=["id", "arn"]),
          res("aws_flow_log.main", after={"traffic_type": "ALL", "log_destination_type": "cloud-watch-logs"}, unknown=["vpc_id", "id"],
              expr={"vpc_id": ref("aws_vpc.main.id")})),
     ["aws_vpc.main"])

# Secrets -----------------------------------------------------------------------------------
case("FERRY-SEC-001",
     plan(res("aws_lambda_function.api", after={"function_name": "api", "environment": [{"variables": {"DB_PASSWORD": "hunter2-hunter2", "LOG_LEVEL": "info"}}]},
              sensitive={}),
          res("aws_ecs_task_definition.app", after={"family": "app", "container_definitions": json.dumps([
              {"name": "web", "image": "acme/web:1", "environment": [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIAIOSFODNN7EXAMPLE"}, {"name": "PORT", "value": "8080"}]}])}),
          res("aws_codebuild_project.build", after={"name": "build", "environment": [{"compute_type": "BUILD_GENERAL1_SMALL", "environment_variable": [
              {"name": "GITHUB_TOKEN", "value": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "type": "PLAINTEXT"}]}]})),
     plan(res("aws_lambda_function.api", after={"function_name": "api", "environment": [{"variables": {"DB_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:111111111111:secret:db", "LOG_LEVEL": "info"}}]}),
          res("aws_ecs_task_definition.app", after={"family": "app", "container_definitions": json.dumps([
              {"name": "web", "image": "acme/web:1", "environment": [{"name": "PORT", "value": "8080"}],
               "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:111111111111:secret:db"}]}])}),
          res("aws_codebuild_project.build", after={"name": "build", "environment": [{"compute_type": "BUILD_GENERAL1_SMALL", "environment_variable": [
              {"name": "GITHUB_TOKEN", "value": "ci/github-token", "type": "SECRETS_MANAGER"}]}]})),
     ["aws_codebuild_project.build", "aws_ecs_task_definition.app", "aws_lambda_function.api"],
     secrets=["hunter2-hunter2", "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"])

case("FERRY-SEC-002",
     plan(res("aws_db_instance.main", after={"identifier": "main", "engine": "postgres", "username": "app", "password": "changeme-now"},
              sensitive={"password": True}),
          res("aws_rds_cluster.reports", after={"cluster_identifier": "reports", "engine": "aurora-postgresql", "master_password": "changeme-too"},
              sensitive={"master_password": True}, expr={"master_password": ref("var.reports_password")}),
          variables={"reports_password": {"default": "changeme-too", "sensitive": True}}),
     plan(res("aws_db_instance.main", after={"identifier": "main", "engine": "postgres", "username": "app"}, unknown=["password"],
              sensitive={"password": True}, expr={"password": ref("random_password.db.result")}),
          res("random_password.db", after={"length": 32, "special": True}, unknown=["result", "id"]),
          res("aws_rds_cluster.reports", after={"cluster_identifier": "reports", "engine": "aurora-postgresql", "master_password": "from-ferry-secret-store"},
              sensitive={"master_password": True}, expr={"master_password": ref("var.reports_password")}),
          variables={"reports_password": {"sensitive": True}}),
     ["aws_db_instance.main", "aws_rds_cluster.reports"],
     secrets=["changeme-now", "changeme-too"])

# Network -----------------------------------------------------------------------------------
case("FERRY-NET-001",
     plan(res("aws_security_group.ssh", after={"name": "ssh", "ingress": [
         {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": [], "security_groups": [], "self": False, "description": "ssh", "prefix_list_ids": []}],
         "egress": []}, unknown=["id", "arn", "vpc_id"]),
          res("aws_vpc_security_group_ingress_rule.db", after={"cidr_ipv6": "::/0", "cidr_ipv4": None, "from_port": 5432, "to_port": 5432, "ip_protocol": "tcp"},
              unknown=["security_group_id", "id", "arn"], expr={"security_group_id": ref("aws_security_group.ssh.id")})),
     plan(res("aws_security_group.web", after={"name": "web", "ingress": [
         {"from_port": 443, "to_port": 443, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": ["::/0"], "security_groups": [], "self": False, "description": "https", "prefix_list_ids": []},
         {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["10.0.0.0/8"], "ipv6_cidr_blocks": [], "security_groups": [], "self": False, "description": "ssh", "prefix_list_ids": []}],
         "egress": []}, unknown=["id", "arn", "vpc_id"]),
          res("aws_security_group_rule.out", after={"type": "egress", "from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"]},
              unknown=["security_group_id", "id"], expr={"security_group_id": ref("aws_security_group.web.id")})),
     ["aws_security_group.ssh", "aws_vpc_security_group_ingress_rule.db"])

case("FERRY-NET-002",
     plan(res("aws_lb.web", after={"name": "web", "internal": False, "load_balancer_type": "application"}, unknown=["arn", "id", "dns_name"])),
     plan(res("aws_lb.web", after={"name": "web", "internal": False, "load_balancer_type": "application"}, unknown=["arn", "id", "dns_name"]),
          res("aws_wafv2_web_acl_association.web", after={}, unknown=["resource_arn", "web_acl_arn", "id"],
              expr={"resource_arn": ref("aws_lb.web.arn"), "web_acl_arn": ref("aws_wafv2_web_acl.main.arn")}),
          res("aws_lb.nlb", after={"name": "nlb", "internal": False, "load_balancer_type": "network"}, unknown=["arn", "id"])),
     ["aws_lb.web"])

# Containers --------------------------------------------------------------------------------
case("FERRY-CTR-001",
     plan(res("aws_ecr_repository.app", after={"name": "app", "image_scanning_configuration": [{"scan_on_push": False}]})),
     plan(res("aws_ecr_repository.app", after={"name": "app", "image_scanning_configuration": [{"scan_on_push": True}]})),
     ["aws_ecr_repository.app"])

case("FERRY-CTR-002",
     plan(res("aws_ecr_repository.app", after={"name": "app", "image_scanning_configuration": [{"scan_on_push": True}]})),
     plan(res("aws_ecr_repository.app", after={"name": "app", "image_scanning_configuration": [{"scan_on_push": True}]}),
          res("aws_ecr_lifecycle_policy.app", after={"repository": "app", "policy": "{\"rules\":[]}"}, unknown=["id"],
              expr={"repository": ref("aws_ecr_repository.app.name")})),
     ["aws_ecr_repository.app"])

def subnet(address, az, index=None):
    return res(address, after={"cidr_block": "10.0.1.0/24", "availability_zone": az}, unknown=["id", "arn", "vpc_id"], index=index,
               expr={"vpc_id": ref("aws_vpc.main.id")})

case("FERRY-CTR-003",
     plan(subnet("aws_subnet.a", "eu-west-1a"), subnet("aws_subnet.a2", "eu-west-1a"),
          res("aws_autoscaling_group.web", after={"name": "web", "min_size": 2, "max_size": 4}, unknown=["vpc_zone_identifier", "id", "arn", "availability_zones"],
              expr={"vpc_zone_identifier": ref("aws_subnet.a.id")}),
          res("aws_ecs_service.api", after={"name": "api", "desired_count": 2, "network_configuration": [{"assign_public_ip": False}]},
              unknown=["id"], expr={"network_configuration": [{"subnets": ref("aws_subnet.a.id", "aws_subnet.a2.id")}]})),
     plan(subnet("aws_subnet.a", "eu-west-1a"), subnet("aws_subnet.b", "eu-west-1b"),
          subnet("aws_subnet.private[0]", "eu-west-1a", index=0), subnet("aws_subnet.private[1]", "eu-west-1b", index=1),
          res("aws_autoscaling_group.web", after={"name": "web", "min_size": 2, "max_size": 4}, unknown=["vpc_zone_identifier", "id", "arn", "availability_zones"],
              expr={"vpc_zone_identifier": ref("aws_subnet.a.id", "aws_subnet.b.id")}),
          res("aws_ecs_service.api", after={"name": "api", "desired_count": 2, "network_configuration": [{"assign_public_ip": False}]},
              unknown=["id"], expr={"network_configuration": [{"subnets": ref("aws_subnet.private")}]})),
     ["aws_autoscaling_group.web", "aws_ecs_service.api"])

# KMS, SNS ----------------------------------------------------------------------------------
case("FERRY-KMS-001",
     plan(res("aws_kms_key.data", after={"description": "data", "enable_key_rotation": False, "customer_master_key_spec": "SYMMETRIC_DEFAULT"})),
     plan(res("aws_kms_key.data", after={"description": "data", "enable_key_rotation": True, "customer_master_key_spec": "SYMMETRIC_DEFAULT"}),
          res("aws_kms_key.signing", after={"description": "signing", "enable_key_rotation": False, "customer_master_key_spec": "RSA_2048", "key_usage": "SIGN_VERIFY"})),
     ["aws_kms_key.data"])

case("FERRY-SNS-001",
     plan(res("aws_sns_topic.alerts", after={"name": "alerts", "kms_master_key_id": None})),
     plan(res("aws_sns_topic.alerts", after={"name": "alerts", "kms_master_key_id": "alias/aws/sns"})),
     ["aws_sns_topic.alerts"])

# Tagging and naming ------------------------------------------------------------------------
ALL_TAGS = {"Environment": "dev", "Owner": "platform", "CostCenter": "cc-1", "DataClassification": "internal"}

case("FERRY-TAG-001",
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs", "tags": {"Environment": "dev"}, "tags_all": {"Environment": "dev"}}),
          res("module.queue.aws_sqs_queue.dlq", after={"name": "dlq", "tags": {"Environment": "dev", "Owner": "", "CostCenter": "cc-1", "DataClassification": "internal"},
                                                         "tags_all": {"Environment": "dev", "Owner": "", "CostCenter": "cc-1", "DataClassification": "internal"}})),
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs", "tags": {"Environment": "dev"}}, unknown=["tags_all", "arn", "id"]),
          res("module.queue.aws_sqs_queue.dlq", after={"name": "dlq", "tags": ALL_TAGS, "tags_all": ALL_TAGS}),
          default_tags={"Owner": "platform", "CostCenter": "cc-1", "DataClassification": "internal"}),
     ["aws_sqs_queue.jobs", "module.queue.aws_sqs_queue.dlq"])

case("FERRY-TAG-002",
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs", "tags": {"Environment": "staging"}, "tags_all": {"Environment": "staging"}})),
     plan(res("aws_sqs_queue.jobs", after={"name": "jobs", "tags": {"Environment": "Prod"}, "tags_all": {"Environment": "Prod"}}),
          res("aws_sqs_queue.untagged", after={"name": "untagged", "tags": {}, "tags_all": {}})),
     ["aws_sqs_queue.jobs"],
     context={"environment": "prod"})

case("FERRY-TAG-003",
     plan(bucket("aws_s3_bucket.data", "data-bucket"), bucket("aws_s3_bucket.ok", "acme-prod-ok")),
     plan(bucket("aws_s3_bucket.data", "acme-prod-data"), res("aws_sqs_queue.jobs", after={"name": "acme-prod-jobs"})),
     ["aws_s3_bucket.data"],
     config={"name_pattern": "acme-(dev|prod)-[a-z0-9-]+"})

# Change safety -----------------------------------------------------------------------------
DB = {"identifier": "main", "engine": "postgres", "engine_version": "15", "instance_class": "db.t4g.small"}
case("FERRY-CHG-001",
     plan(res("aws_db_instance.main", before=dict(DB, id="db-1", arn="arn:aws:rds:eu-west-1:111111111111:db:main"),
              after=dict(DB, engine_version="16", identifier="main2"), actions=("delete", "create"), unknown=["id", "arn"],
              reason="replace_because_cannot_update"),
          res("aws_s3_bucket.old", before={"bucket": "acme-old", "id": "acme-old", "tags": {}, "tags_all": {}}, actions=("delete",))),
     plan(res("aws_db_instance.main", before=dict(DB, id="db-1"), after=dict(DB, instance_class="db.t4g.medium", id="db-1"), actions=("update",)),
          res("aws_instance.web", before={"ami": "ami-1", "id": "i-1"}, actions=("delete",))),
     ["aws_db_instance.main", "aws_s3_bucket.old"],
     context={"environment": "prod", "protected": True},
     severity="critical")


def main():
    out_dir = os.path.join(HERE, "rules")
    shutil.rmtree(out_dir, ignore_errors=True)
    for rule, c in CASES.items():
        d = os.path.join(out_dir, rule)
        os.makedirs(d)
        for name, doc in (("fail.json", c["fail"]), ("pass.json", c["ok"])):
            with open(os.path.join(d, name), "w") as f:
                json.dump(doc, f, indent=2, sort_keys=False)
                f.write("\n")
        meta = {"expect": sorted(c["expect"]), "context": c["context"], "config": c["config"]}
        if c["severity"]:
            meta["severity"] = c["severity"]
        if c["secrets"]:
            meta["secrets_never_in_messages"] = c["secrets"]
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    print(f"wrote {len(CASES)} rule fixtures")


if __name__ == "__main__":
    main()
