#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The deployment's IAM policy grants exactly what the code calls.
//!
//! `deploy/aws/blox.yaml` gives the blox daemon a task role; its actions must
//! equal the union of `EcsAdapter::IAM_ACTIONS` and
//! `SqsEventSource::IAM_ACTIONS`, plus `iam:PassRole` (which `StartTask`
//! checks for task definitions that carry roles). Fewer and a call fails in
//! production with AccessDenied; more and the role is no longer least
//! privilege.
//!
//! The template is CloudFormation YAML with short-form tags (`!Sub`, `!If`),
//! which a general YAML parser would need custom tag handling for; a small
//! indentation-based reader of the role's `Action:` entries is enough and
//! keeps the workspace free of a YAML dependency. It refuses what it cannot
//! read exactly (wildcards, `NotAction`, managed or separate policies).

use std::collections::BTreeSet;
use std::path::PathBuf;

use blox_core::aws::{EcsAdapter, SqsEventSource};

/// The logical id of the daemon's task role in the template.
const TASK_ROLE: &str = "BloxTaskRole";

/// Actions granted beyond the adapters' declared calls.
const EXTRA_ACTIONS: &[&str] = &["iam:PassRole"];

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/aws/blox.yaml")
}

/// The actions the code declares it calls.
fn declared_actions() -> BTreeSet<String> {
    EcsAdapter::IAM_ACTIONS
        .iter()
        .chain(SqsEventSource::IAM_ACTIONS)
        .map(|a| (*a).to_owned())
        .collect()
}

/// Removes a trailing `# comment` (outside quotes) and surrounding blanks.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || line[..i].ends_with(' ') => return line[..i].trim_end(),
            _ => {}
        }
    }
    line.trim_end()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

/// The lines of the resource `logical_id` (the key line included), with
/// comments and blank lines removed.
fn resource_block<'a>(template: &'a str, logical_id: &str) -> Result<Vec<&'a str>, String> {
    let lines: Vec<&str> = template
        .lines()
        .map(strip_comment)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let resources = lines
        .iter()
        .position(|l| *l == "Resources:")
        .ok_or("the template has no top-level Resources:")?;
    let key = format!("{logical_id}:");
    let start = lines[resources + 1..]
        .iter()
        .take_while(|l| indent(l) > 0)
        .position(|l| l.trim() == key && indent(l) == indent(lines[resources + 1]))
        .map(|i| resources + 1 + i)
        .ok_or_else(|| format!("no resource {logical_id} under Resources:"))?;
    let own = indent(lines[start]);
    let end = lines[start + 1..]
        .iter()
        .position(|l| indent(l) <= own)
        .map_or(lines.len(), |i| start + 1 + i);
    Ok(lines[start..end].to_vec())
}

/// Every action named in an `Action:` entry of the resource's block:
/// `Action: x`, `Action: [x, y]` or a block list of `- x` items.
fn role_actions(template: &str, logical_id: &str) -> Result<BTreeSet<String>, String> {
    let block = resource_block(template, logical_id)?;
    if !block
        .iter()
        .any(|l| l.trim() == "Type: AWS::IAM::Role" || l.trim() == "Type: \"AWS::IAM::Role\"")
    {
        return Err(format!("{logical_id} is not an AWS::IAM::Role"));
    }
    for line in &block {
        let t = line.trim_start().trim_start_matches("- ");
        for refused in ["NotAction:", "ManagedPolicyArns:", "PermissionsBoundary:"] {
            if t.starts_with(refused) {
                return Err(format!(
                    "{logical_id} uses {refused} which this check cannot bound"
                ));
            }
        }
    }
    let mut actions = BTreeSet::new();
    let mut in_assume_role = false;
    let mut assume_indent = 0;
    let mut i = 0;
    while i < block.len() {
        let line = block[i];
        let t = line.trim_start().trim_start_matches("- ");
        let at = indent(line) + (line.trim_start().len() - t.len());
        if in_assume_role && indent(line) <= assume_indent {
            in_assume_role = false;
        }
        if t.starts_with("AssumeRolePolicyDocument:") {
            in_assume_role = true;
            assume_indent = indent(line);
        }
        if let Some(rest) = t.strip_prefix("Action:") {
            let mut found = Vec::new();
            let rest = rest.trim();
            if let Some(list) = rest.strip_prefix('[') {
                let list = list
                    .strip_suffix(']')
                    .ok_or_else(|| format!("unterminated flow list: {line}"))?;
                found.extend(list.split(',').map(unquote).filter(|a| !a.is_empty()));
            } else if !rest.is_empty() {
                found.push(unquote(rest));
            } else {
                while i + 1 < block.len() && indent(block[i + 1]) >= at {
                    let item = block[i + 1].trim_start();
                    let Some(item) = item.strip_prefix("- ") else {
                        break;
                    };
                    found.push(unquote(item));
                    i += 1;
                }
                if found.is_empty() {
                    return Err(format!("Action: with no list items after: {line}"));
                }
            }
            if !in_assume_role {
                for action in found {
                    if action.contains('*') || action.contains('?') || !action.contains(':') {
                        return Err(format!("not one exact action: {action:?}"));
                    }
                    actions.insert(action.to_owned());
                }
            }
        }
        i += 1;
    }
    Ok(actions)
}

/// Compares a granted set with the declared one; `Err` lists the differences.
fn compare(granted: &BTreeSet<String>, declared: &BTreeSet<String>) -> Result<(), String> {
    let extra: BTreeSet<&str> = EXTRA_ACTIONS.iter().copied().collect();
    let missing: Vec<&String> = declared.difference(granted).collect();
    let surplus: Vec<&String> = granted
        .difference(declared)
        .filter(|a| !extra.contains(a.as_str()))
        .collect();
    if missing.is_empty() && surplus.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the task role grants {} fewer actions than the code calls ({missing:?}) \
             and {} more ({surplus:?})",
            missing.len(),
            surplus.len()
        ))
    }
}

/// Checks a template: the task role's actions equal the declared ones, and
/// nothing else in the template attaches permissions to roles.
fn check_template(template: &str, declared: &BTreeSet<String>) -> Result<(), String> {
    for line in template.lines().map(strip_comment) {
        let t = line.trim();
        if t.starts_with("Type:")
            && [
                "AWS::IAM::Policy",
                "AWS::IAM::ManagedPolicy",
                "AWS::IAM::RolePolicy",
            ]
            .iter()
            .any(|ty| unquote(&t["Type:".len()..]) == *ty)
        {
            return Err(format!(
                "a separate policy resource ({t}) could widen the role"
            ));
        }
    }
    let granted = role_actions(template, TASK_ROLE)?;
    for extra in EXTRA_ACTIONS {
        if !granted.contains(*extra) {
            return Err(format!("the task role lacks {extra}"));
        }
    }
    compare(&granted, declared)
}

#[test]
fn the_task_role_grants_exactly_the_actions_the_adapters_declare() {
    let template = std::fs::read_to_string(template_path()).unwrap();
    check_template(&template, &declared_actions()).unwrap();
}

#[test]
fn the_declared_actions_include_ecs_and_sqs_calls() {
    let declared = declared_actions();
    assert!(declared.contains("ecs:StartTask"));
    // StartTask with tags is authorized by ecs:TagResource on the new tasks.
    assert!(declared.contains("ecs:TagResource"));
    assert!(declared.contains("sqs:ReceiveMessage"));
    assert_eq!(
        declared.len(),
        EcsAdapter::IAM_ACTIONS.len() + SqsEventSource::IAM_ACTIONS.len(),
        "an action is declared twice"
    );
}

#[test]
fn the_task_role_reader_sees_every_action_of_the_real_template() {
    let template = std::fs::read_to_string(template_path()).unwrap();
    let granted = role_actions(&template, TASK_ROLE).unwrap();
    // The assume-role statement's sts:AssumeRole is not a grant.
    assert!(!granted.contains("sts:AssumeRole"));
    assert!(granted.contains("ecs:ListClusters"));
    assert!(granted.contains("sqs:DeleteMessage"));
    assert!(granted.contains("iam:PassRole"));
    // The execution role's actions are not the task role's.
    assert!(!granted.contains("logs:PutLogEvents"));
}

const ROLE: &str = r#"
Parameters:
  X:
    Type: String
Resources:
  Other:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyDocument:
            Statement:
              - Action: s3:GetObject
  BloxTaskRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Action: sts:AssumeRole
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action:
                  - ecs:ListClusters  # a comment
                  - "ecs:StartTask"
                Resource: "*"
              - Action: [sqs:ReceiveMessage, 'sqs:DeleteMessage']
                Resource: "*"
              - !If
                - C
                - Action:
                    - iam:PassRole
                  Resource: "*"
                - !Ref AWS::NoValue
              - Action: sqs:GetQueueUrl
  After:
    Type: AWS::SQS::Queue
"#;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn sample_declared() -> BTreeSet<String> {
    set(&[
        "ecs:ListClusters",
        "ecs:StartTask",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueUrl",
    ])
}

#[test]
fn the_reader_takes_block_flow_and_scalar_actions_of_only_the_named_role() {
    let granted = role_actions(ROLE, TASK_ROLE).unwrap();
    assert_eq!(
        granted,
        set(&[
            "ecs:ListClusters",
            "ecs:StartTask",
            "iam:PassRole",
            "sqs:DeleteMessage",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
        ])
    );
    check_template(ROLE, &sample_declared()).unwrap();
}

#[test]
fn a_policy_missing_a_declared_action_fails() {
    let doctored = ROLE.replace("                  - \"ecs:StartTask\"\n", "");
    let err = check_template(&doctored, &sample_declared()).unwrap_err();
    assert!(err.contains("ecs:StartTask"), "{err}");
}

#[test]
fn a_policy_granting_an_undeclared_action_fails() {
    let doctored = ROLE.replace(
        "- ecs:ListClusters",
        "- ecs:ListClusters\n                  - ecs:RunTask",
    );
    let err = check_template(&doctored, &sample_declared()).unwrap_err();
    assert!(err.contains("ecs:RunTask"), "{err}");
}

#[test]
fn the_code_declaring_a_new_action_fails_until_the_policy_grants_it() {
    let mut declared = sample_declared();
    declared.insert("ecs:ListServices".to_owned());
    let err = check_template(ROLE, &declared).unwrap_err();
    assert!(err.contains("ecs:ListServices"), "{err}");
}

#[test]
fn wildcards_not_action_and_managed_policies_are_refused() {
    let wildcard = ROLE.replace("- ecs:ListClusters", "- ecs:List*");
    assert!(check_template(&wildcard, &sample_declared()).is_err());
    let not_action = ROLE.replace("- Action: sqs:GetQueueUrl", "- NotAction: sqs:GetQueueUrl");
    assert!(check_template(&not_action, &sample_declared()).is_err());
    let managed = ROLE.replace(
        "      Policies:\n        - PolicyName: p",
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n      Policies:\n        - PolicyName: p",
    );
    assert!(check_template(&managed, &sample_declared()).is_err());
    let separate = format!("{ROLE}  Extra:\n    Type: AWS::IAM::Policy\n");
    assert!(check_template(&separate, &sample_declared()).is_err());
}

#[test]
fn a_missing_role_or_pass_role_fails() {
    let renamed = ROLE.replace("  BloxTaskRole:", "  SomeRole:");
    assert!(check_template(&renamed, &sample_declared()).is_err());
    let no_pass_role = ROLE.replace("- iam:PassRole", "- ecs:ListClusters");
    let err = check_template(&no_pass_role, &sample_declared()).unwrap_err();
    assert!(err.contains("iam:PassRole"), "{err}");
}
