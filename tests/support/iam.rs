//! IAM coverage of the Lambdas: a recording proxy in front of moto_server names every AWS
//! operation a function makes (in IAM form, with the table, queue, secret or parameter it acts
//! on), and [`check_granted`] checks that `infra/template.yaml` grants each of them to that
//! function. moto enforces no IAM, so without this a missing grant only shows once deployed.
//!
//! Wiring: give each Lambda's `SdkConfig` the endpoint of its own [`AwsRecorder`], tell
//! [`ResourceNames`] which runtime name is which template resource, and at the end of the test
//! call [`check_granted`] with the recorder's [`AwsRecorder::calls`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

// --- Recording proxy ---------------------------------------------------------------------------

/// One AWS API operation a function made, as IAM authorises it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AwsCall {
    /// The IAM action, e.g. `dynamodb:GetItem`, `sqs:SendMessage`. Batch and transaction
    /// operations are named by the actions IAM checks for them: `SendMessageBatch` is
    /// `sqs:SendMessage`, each `Put` of a `TransactWriteItems` is `dynamodb:PutItem`. A request
    /// the recorder cannot name is `unknown:<method> <path>` (or `unknown:<X-Amz-Target>`).
    pub action: String,
    /// The table name (`<table>/index/<index>` for a Query or Scan of an index), queue URL,
    /// secret id or parameter name the request names; `None` when it names none.
    pub resource: Option<String>,
}

/// A reverse proxy in front of moto_server that records each request as [`AwsCall`]s and
/// passes requests and answers through unchanged (moto's `x-amz-crc32` and body included).
pub struct AwsRecorder {
    /// Where to point the SDK (`SdkConfig` endpoint URL).
    pub url: String,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    faults: Faults,
}

/// Requests refused while set: (IAM action, text the body contains).
type Faults = Arc<Mutex<Vec<(String, String)>>>;

#[derive(Clone)]
struct RecorderState {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    faults: Faults,
}

/// AWS request bodies are small; this only bounds a runaway one.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Connection-level headers, which each hop sets for itself. `content-length` is recomputed
/// from the (unchanged) body.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

impl AwsRecorder {
    /// Starts the proxy on 127.0.0.1 (a free port) in front of `upstream`, e.g. the value of
    /// `RELAY_TEST_MOTO_URL`.
    pub async fn start(upstream: &str) -> AwsRecorder {
        let calls = Arc::new(Mutex::new(Vec::new()));
        // No decompression (moto's bytes go back as they came), no redirects, no proxy from
        // the environment. Long enough for a 20 s ReceiveMessage long poll.
        let http = reqwest::Client::builder()
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("build the recorder's HTTP client");
        let faults = Arc::new(Mutex::new(Vec::new()));
        let state = RecorderState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http,
            calls: calls.clone(),
            faults: faults.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the AWS recorder");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("AWS recorder address")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AwsRecorder { url, calls, faults }
    }

    /// Until [`heal`](Self::heal), every request for `action` whose body contains `needle` is
    /// answered 400 (a DynamoDB `ValidationException`: the SDK does not retry it, so the
    /// failure reaches the worker at once, well inside the message's visibility) without
    /// reaching moto; recorded all the same.
    pub fn fail_while(&self, action: &str, needle: &str) {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((action.to_string(), needle.to_string()));
    }

    pub fn heal(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Every operation recorded so far, in order (repeats included).
    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}

async fn forward(State(state): State<RecorderState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("AWS recorder: unreadable request body: {e}"),
            )
        }
    };
    let recorded = record_request(&parts.method, &parts.uri, &parts.headers, &body);
    let injected = {
        let faults = state
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let text = String::from_utf8_lossy(&body);
        faults.iter().any(|(action, needle)| {
            recorded.iter().any(|c| &c.action == action) && text.contains(needle.as_str())
        })
    };
    state
        .calls
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(recorded);
    if injected {
        let mut response = Response::new(Body::from(
            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"injected by the recorder"}"#,
        ));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        return response;
    }

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if name.as_str() == "host" || name.as_str() == "expect" || hop_by_hop(name.as_str()) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let sent = state
        .http
        .request(parts.method.clone(), format!("{}{path}", state.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("AWS recorder: upstream {} failed: {e}", state.upstream),
            )
        }
    };
    let status = answer.status();
    let answer_headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("AWS recorder: upstream answer unreadable: {e}"),
            )
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &answer_headers {
        if !hop_by_hop(name.as_str()) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

fn hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The calls of one request, whatever its shape: [`parse_call`], else an SQS query-protocol
/// `Action` in the URL, else `unknown:<method> <path>` so that nothing escapes the check.
fn record_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<AwsCall> {
    let mut calls = parse_call(headers, body);
    if calls.is_empty() {
        if let Some(query) = uri.query() {
            calls.extend(query_protocol_call(headers, &form_pairs(query)));
        }
    }
    if calls.is_empty() {
        calls.push(AwsCall {
            action: format!("unknown:{method} {}", uri.path()),
            resource: None,
        });
    }
    calls
}

/// The IAM-form calls of one request: the JSON protocol (`X-Amz-Target`), or a form-encoded
/// query-protocol body with an `Action`. Empty when the request is neither.
fn parse_call(headers: &HeaderMap, body: &[u8]) -> Vec<AwsCall> {
    if let Some(target) = header(headers, "x-amz-target") {
        let json: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
        let service = target_service(prefix)
            .map(str::to_string)
            .or_else(|| signing_service(headers));
        let Some(service) = service else {
            return vec![call(format!("unknown:{target}"), None)];
        };
        return match service.as_str() {
            "dynamodb" => dynamodb_calls(operation, &json),
            "sqs" => vec![call(
                format!("sqs:{}", sqs_action(operation)),
                text(&json, "QueueUrl").or_else(|| text(&json, "QueueName")),
            )],
            "secretsmanager" => vec![call(
                format!("secretsmanager:{operation}"),
                text(&json, "SecretId"),
            )],
            "ssm" => ssm_calls(operation, &json),
            other => vec![call(format!("{other}:{operation}"), None)],
        };
    }
    match std::str::from_utf8(body) {
        Ok(form) if form.contains("Action=") => query_protocol_call(headers, &form_pairs(form))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn call(action: String, resource: Option<String>) -> AwsCall {
    AwsCall { action, resource }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn text(json: &Json, key: &str) -> Option<String> {
    json.get(key).and_then(Json::as_str).map(str::to_string)
}

/// The IAM service prefix of an `X-Amz-Target` prefix.
fn target_service(prefix: &str) -> Option<&'static str> {
    match prefix {
        "AmazonSQS" => Some("sqs"),
        "secretsmanager" => Some("secretsmanager"),
        "AmazonSSM" => Some("ssm"),
        "TrentService" => Some("kms"),
        "AWSEvents" => Some("events"),
        "AWSStepFunctions" => Some("states"),
        p if p.starts_with("DynamoDB_") || p.starts_with("DynamoDBStreams_") => Some("dynamodb"),
        p if p.starts_with("Logs_") => Some("logs"),
        p if p.starts_with("Kinesis_") => Some("kinesis"),
        p if p.starts_with("Firehose_") => Some("firehose"),
        _ => None,
    }
}

/// The service of the SigV4 credential scope (`Credential=AKID/date/region/service/aws4_request`),
/// which is the IAM prefix for the services the relay uses.
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = header(headers, "authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    let parts: Vec<&str> = credential.split('/').collect();
    (parts.len() >= 5)
        .then(|| parts[parts.len() - 2].to_string())
        .filter(|s| !s.is_empty())
}

/// SQS authorises its batch operations as the single ones.
fn sqs_action(operation: &str) -> &str {
    match operation {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    }
}

/// A table name from `TableName`, which may also be the table's ARN.
fn table_name(value: &str) -> String {
    match value.split_once(":table/") {
        Some((arn, name)) if arn.starts_with("arn:") => name.to_string(),
        _ => value.to_string(),
    }
}

fn dynamodb_calls(operation: &str, json: &Json) -> Vec<AwsCall> {
    let mut calls: Vec<AwsCall> = Vec::new();
    match operation {
        // Each item of a transaction is authorised as its own action on its own table
        // (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
        "TransactWriteItems" | "TransactGetItems" => {
            let items = json.get("TransactItems").and_then(Json::as_array);
            for item in items.into_iter().flatten() {
                for (kind, action) in [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Get", "GetItem"),
                ] {
                    if let Some(inner) = item.get(kind) {
                        let table = inner
                            .get("TableName")
                            .and_then(Json::as_str)
                            .map(table_name);
                        push(&mut calls, action, table);
                    }
                }
            }
            if calls.is_empty() {
                push(&mut calls, operation, None);
            }
        }
        "BatchWriteItem" | "BatchGetItem" => {
            let tables = json.get("RequestItems").and_then(Json::as_object);
            for table in tables.into_iter().flat_map(|t| t.keys()) {
                push(&mut calls, operation, Some(table_name(table)));
            }
            if calls.is_empty() {
                push(&mut calls, operation, None);
            }
        }
        _ => {
            let table = json.get("TableName").and_then(Json::as_str).map(table_name);
            let index = json.get("IndexName").and_then(Json::as_str);
            let resource = match (table, index) {
                (Some(t), Some(i)) => Some(format!("{t}/index/{i}")),
                (t, _) => t,
            };
            push(&mut calls, operation, resource);
        }
    }
    calls
}

fn push(calls: &mut Vec<AwsCall>, action: &str, resource: Option<String>) {
    let c = call(format!("dynamodb:{action}"), resource);
    if !calls.contains(&c) {
        calls.push(c);
    }
}

fn ssm_calls(operation: &str, json: &Json) -> Vec<AwsCall> {
    let action = format!("ssm:{operation}");
    if let Some(names) = json.get("Names").and_then(Json::as_array) {
        let calls: Vec<AwsCall> = names
            .iter()
            .filter_map(Json::as_str)
            .map(|n| call(action.clone(), Some(n.to_string())))
            .collect();
        if !calls.is_empty() {
            return calls;
        }
    }
    let resource = text(json, "Name").or_else(|| text(json, "Path"));
    vec![call(action, resource)]
}

/// A query-protocol request (`Action=SendMessage&QueueUrl=…`): SQS's older wire format.
fn query_protocol_call(headers: &HeaderMap, form: &[(String, String)]) -> Option<AwsCall> {
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let action = get("Action")?;
    let service = signing_service(headers)
        .or_else(|| (get("Version").as_deref() == Some("2012-11-05")).then(|| "sqs".to_string()));
    Some(match service.as_deref() {
        Some("sqs") => call(
            format!("sqs:{}", sqs_action(&action)),
            get("QueueUrl").or_else(|| get("QueueName")),
        ),
        Some(other) => call(format!("{other}:{action}"), None),
        None => call(format!("unknown:{action}"), None),
    })
}

/// `a=1&b=x%2Fy+z` as decoded pairs.
fn form_pairs(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high << 4) | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// --- Template ------------------------------------------------------------------------------------

/// One `Allow` statement of a function's policy, SAM policy templates expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// As written: `dynamodb:GetItem`, `sqs:SendMessage*`, `dynamodb:*`.
    pub actions: Vec<String>,
    pub resources: Vec<ResourceRef>,
}

/// What a `Resource:` entry points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceRef {
    /// `"*"`.
    Any,
    /// A template resource (or parameter): `!GetAtt X.Arn` (`attribute: Some("Arn")`),
    /// `!Ref X` (`None`), or a `!Sub` naming `${X}` / `${X.Arn}`, with `suffix` the text after
    /// that name (`"/index/*"` in `!Sub "${X.Arn}/index/*"`; other `${…}` in it read as `*`).
    /// A SAM policy template's parameter (`QueueName: !GetAtt WorkQueue.QueueName`) also points
    /// at its resource.
    Resource {
        logical_id: String,
        attribute: Option<String>,
        suffix: String,
    },
    /// Anything else, as written (pseudo parameters such as `${AWS::Region}` read as `*`).
    Literal(String),
}

/// The grants of `function_logical_id` in `template_path`: inline `Statement`s of
/// `Properties.Policies` and the SAM policy templates it names. Managed policies (plain names
/// or ARNs in `Policies`) grant nothing here, so a check that relies on one fails rather than
/// passing blindly. Panics on what it cannot read faithfully (a `Deny` or `NotAction`
/// statement, an unknown SAM policy template, a function with its own `Role`).
pub fn function_grants(template_path: &Path, function_logical_id: &str) -> Vec<Grant> {
    load_grants(template_path, function_logical_id).unwrap_or_else(|e| panic!("{e}"))
}

fn load_grants(path: &Path, function: &str) -> Result<Vec<Grant>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: Yaml =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
    let resource = doc
        .get("Resources")
        .and_then(|r| r.get(function))
        .ok_or_else(|| format!("{} has no resource {function}", path.display()))?;
    let properties = resource.get("Properties");
    if properties.and_then(|p| p.get("Role")).is_some() {
        return Err(format!(
            "{function} names its own Role; only SAM `Policies` are read"
        ));
    }
    let Some(policies) = properties.and_then(|p| p.get("Policies")) else {
        return Ok(Vec::new());
    };
    let entries: Vec<&Yaml> = match policies {
        Yaml::Sequence(list) => list.iter().collect(),
        single => vec![single],
    };
    let mut grants = Vec::new();
    for entry in entries {
        match entry {
            // A managed policy by name or ARN: its content is not in the template.
            Yaml::String(_) => {}
            Yaml::Mapping(m) if m.contains_key("Statement") => {
                let statement = m.get("Statement").unwrap_or(&Yaml::Null);
                grants.extend(statements(function, statement)?);
            }
            Yaml::Mapping(m) if m.len() == 1 => {
                if let Some((name, parameters)) = m.iter().next() {
                    let name = name.as_str().unwrap_or_default();
                    grants.extend(sam_policy(function, name, parameters)?);
                }
            }
            other => return Err(format!("{function}: unreadable Policies entry {other:?}")),
        }
    }
    Ok(grants)
}

fn as_list(value: Option<&Yaml>) -> Vec<&Yaml> {
    match value {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Sequence(list)) => list.iter().collect(),
        Some(single) => vec![single],
    }
}

fn statements(function: &str, value: &Yaml) -> Result<Vec<Grant>, String> {
    let mut grants = Vec::new();
    for statement in as_list(Some(value)) {
        let sid = statement.get("Sid").and_then(Yaml::as_str).unwrap_or("-");
        if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
            return Err(format!(
                "{function}, statement {sid}: NotAction/NotResource is not supported"
            ));
        }
        match statement.get("Effect").and_then(Yaml::as_str) {
            Some("Allow") => {}
            other => {
                return Err(format!(
                    "{function}, statement {sid}: Effect {other:?} is not supported (only Allow)"
                ))
            }
        }
        let actions = as_list(statement.get("Action"))
            .into_iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{function}, statement {sid}: action {a:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resources = as_list(statement.get("Resource"))
            .into_iter()
            .map(resource_ref)
            .collect();
        grants.push(Grant { actions, resources });
    }
    Ok(grants)
}

/// A SAM policy template: its one parameter and its statements, as (actions, resource
/// patterns) where `{}` is the parameter's value and `*` a pseudo parameter.
struct SamPolicy {
    name: &'static str,
    parameter: &'static str,
    statements: &'static [(&'static [&'static str], &'static [&'static str])],
}

/// From aws/serverless-application-model `samtranslator/policy_templates_data/policy_templates.json`.
const SAM_POLICIES: &[SamPolicy] = &[
    SamPolicy {
        name: "SQSSendMessagePolicy",
        parameter: "QueueName",
        statements: &[(&["sqs:SendMessage*"], &["arn:*:sqs:*:*:{}"])],
    },
    SamPolicy {
        name: "SQSPollerPolicy",
        parameter: "QueueName",
        statements: &[(
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            &["arn:*:sqs:*:*:{}"],
        )],
    },
    SamPolicy {
        name: "AWSSecretsManagerGetSecretValuePolicy",
        parameter: "SecretArn",
        statements: &[(&["secretsmanager:GetSecretValue"], &["{}"])],
    },
    SamPolicy {
        name: "DynamoDBCrudPolicy",
        parameter: "TableName",
        statements: &[(
            &[
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
                "dynamodb:ConditionCheckItem",
            ],
            &[
                "arn:*:dynamodb:*:*:table/{}",
                "arn:*:dynamodb:*:*:table/{}/index/*",
            ],
        )],
    },
    SamPolicy {
        name: "DynamoDBReadPolicy",
        parameter: "TableName",
        statements: &[(
            &[
                "dynamodb:GetItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
            ],
            &[
                "arn:*:dynamodb:*:*:table/{}",
                "arn:*:dynamodb:*:*:table/{}/index/*",
            ],
        )],
    },
    SamPolicy {
        name: "SSMParameterReadPolicy",
        parameter: "ParameterName",
        statements: &[
            (&["ssm:DescribeParameters"], &["*"]),
            (
                &[
                    "ssm:GetParameters",
                    "ssm:GetParameter",
                    "ssm:GetParametersByPath",
                ],
                &["arn:*:ssm:*:*:parameter/{}"],
            ),
        ],
    },
];

fn sam_policy(function: &str, name: &str, parameters: &Yaml) -> Result<Vec<Grant>, String> {
    let policy = SAM_POLICIES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            format!(
            "{function} uses the SAM policy template {name}, which tests/support/iam.rs does not \
             expand yet: add its statements from SAM's policy_templates.json"
        )
        })?;
    let value = parameters
        .get(policy.parameter)
        .ok_or_else(|| format!("{function}: {name} has no {} parameter", policy.parameter))?;
    let parameter = resource_ref(value);
    Ok(policy
        .statements
        .iter()
        .map(|(actions, patterns)| Grant {
            actions: actions.iter().map(|a| a.to_string()).collect(),
            resources: patterns
                .iter()
                .map(|pattern| expand_pattern(pattern, &parameter))
                .collect(),
        })
        .collect())
}

/// A policy template's resource pattern with the parameter put in.
fn expand_pattern(pattern: &str, parameter: &ResourceRef) -> ResourceRef {
    let Some((before, after)) = pattern.split_once("{}") else {
        return if pattern == "*" {
            ResourceRef::Any
        } else {
            ResourceRef::Literal(pattern.to_string())
        };
    };
    match parameter {
        ResourceRef::Resource {
            logical_id,
            attribute,
            suffix,
        } => ResourceRef::Resource {
            logical_id: logical_id.clone(),
            attribute: attribute.clone(),
            suffix: format!("{suffix}{after}"),
        },
        ResourceRef::Literal(value) => ResourceRef::Literal(format!("{before}{value}{after}")),
        ResourceRef::Any => ResourceRef::Literal(format!("{before}*{after}")),
    }
}

/// A piece of an intrinsic-function expression.
#[derive(Clone, Debug)]
enum Segment {
    Text(String),
    /// `AWS::Region` and the like.
    Pseudo,
    Ref {
        logical_id: String,
        attribute: Option<String>,
    },
    /// An intrinsic this reader does not evaluate (`!If`, `!Select`…).
    Opaque(String),
}

fn resource_ref(value: &Yaml) -> ResourceRef {
    if value.as_str() == Some("*") {
        return ResourceRef::Any;
    }
    let segments = segments(value);
    let named = segments.iter().enumerate().find_map(|(i, s)| match s {
        Segment::Ref {
            logical_id,
            attribute,
        } => Some((i, logical_id, attribute)),
        _ => None,
    });
    match named {
        Some((i, logical_id, attribute)) => ResourceRef::Resource {
            logical_id: logical_id.clone(),
            attribute: attribute.clone(),
            suffix: render(&segments[i + 1..]),
        },
        None => ResourceRef::Literal(render(&segments)),
    }
}

fn render(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Text(t) => t.clone(),
            Segment::Pseudo | Segment::Ref { .. } => "*".to_string(),
            // Matches no real name: what cannot be evaluated grants nothing.
            Segment::Opaque(what) => format!("<{what}>"),
        })
        .collect()
}

fn segments(value: &Yaml) -> Vec<Segment> {
    match value {
        Yaml::String(s) => vec![Segment::Text(s.clone())],
        Yaml::Number(n) => vec![Segment::Text(n.to_string())],
        Yaml::Bool(b) => vec![Segment::Text(b.to_string())],
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            intrinsic(tag.trim_start_matches('!'), &tagged.value)
        }
        Yaml::Mapping(m) if m.len() == 1 => match m.iter().next() {
            Some((Yaml::String(key), inner)) if key == "Ref" || key.starts_with("Fn::") => {
                intrinsic(key.trim_start_matches("Fn::"), inner)
            }
            _ => vec![Segment::Opaque(format!("{value:?}"))],
        },
        other => vec![Segment::Opaque(format!("{other:?}"))],
    }
}

fn intrinsic(name: &str, value: &Yaml) -> Vec<Segment> {
    match (name, value) {
        ("Ref", Yaml::String(id)) if id.starts_with("AWS::") => vec![Segment::Pseudo],
        ("Ref", Yaml::String(id)) => vec![Segment::Ref {
            logical_id: id.clone(),
            attribute: None,
        }],
        ("GetAtt", Yaml::String(path)) => {
            let (id, attribute) = path.split_once('.').unwrap_or((path, ""));
            vec![Segment::Ref {
                logical_id: id.to_string(),
                attribute: Some(attribute.to_string()),
            }]
        }
        ("GetAtt", Yaml::Sequence(parts)) if parts.len() == 2 => {
            match (parts[0].as_str(), parts[1].as_str()) {
                (Some(id), Some(attribute)) => vec![Segment::Ref {
                    logical_id: id.to_string(),
                    attribute: Some(attribute.to_string()),
                }],
                _ => vec![Segment::Opaque("GetAtt".into())],
            }
        }
        ("Sub", Yaml::String(template)) => substitute(template, &HashMap::new()),
        ("Sub", Yaml::Sequence(parts)) if parts.len() == 2 => {
            let vars: HashMap<String, Vec<Segment>> = parts[1]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), segments(v))))
                        .collect()
                })
                .unwrap_or_default();
            match parts[0].as_str() {
                Some(template) => substitute(template, &vars),
                None => vec![Segment::Opaque("Sub".into())],
            }
        }
        ("Join", Yaml::Sequence(parts)) if parts.len() == 2 => {
            let delimiter = parts[0].as_str().unwrap_or_default();
            let mut out = Vec::new();
            for (i, item) in as_list(Some(&parts[1])).into_iter().enumerate() {
                if i > 0 {
                    out.push(Segment::Text(delimiter.to_string()));
                }
                out.extend(segments(item));
            }
            out
        }
        (other, _) => vec![Segment::Opaque(other.to_string())],
    }
}

/// `Fn::Sub`: `${Name}`, `${Name.Attr}`, `${AWS::…}`, `${!Literal}`, and variables of the long
/// form's map.
fn substitute(template: &str, vars: &HashMap<String, Vec<Segment>>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Segment::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push(Segment::Text(rest[start..].to_string()));
            return out;
        };
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push(Segment::Text(format!("${{{literal}}}")));
        } else if let Some(value) = vars.get(name) {
            out.extend(value.iter().cloned());
        } else if name.starts_with("AWS::") {
            out.push(Segment::Pseudo);
        } else {
            let (id, attribute) = match name.split_once('.') {
                Some((id, attribute)) => (id, Some(attribute.to_string())),
                None => (name, None),
            };
            out.push(Segment::Ref {
                logical_id: id.to_string(),
                attribute,
            });
        }
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_string()));
    }
    out
}

// --- The check -----------------------------------------------------------------------------------

/// Which template resource each runtime name in the test is: table name -> `StateTable`,
/// queue URL -> `WorkQueue`, secret ARN (or name, whichever the function is given) ->
/// `OktaSharedSecret`… A Query or Scan of an index (`<table>/index/<index>`) resolves through its
/// table. Queue URLs also match on their path alone (`localhost` vs `127.0.0.1`).
#[derive(Clone, Debug, Default)]
pub struct ResourceNames {
    names: BTreeMap<String, String>,
}

impl ResourceNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// `runtime` (as the function sends it) is the template's `logical_id`.
    pub fn insert(&mut self, runtime: impl Into<String>, logical_id: impl Into<String>) {
        self.names.insert(runtime.into(), logical_id.into());
    }

    /// [`ResourceNames::insert`], chained.
    pub fn with(mut self, runtime: impl Into<String>, logical_id: impl Into<String>) -> Self {
        self.insert(runtime, logical_id);
        self
    }

    fn lookup(&self, runtime: &str) -> Option<&str> {
        if let Some(id) = self.names.get(runtime) {
            return Some(id);
        }
        let path = url_path(runtime)?;
        self.names
            .iter()
            .find(|(name, _)| url_path(name) == Some(path))
            .map(|(_, id)| id.as_str())
    }

    /// The logical id a call's resource is, and the part below it (`/index/<name>`, or "").
    fn resolve(&self, runtime: &str) -> Option<(&str, String)> {
        if let Some(id) = self.lookup(runtime) {
            return Some((id, String::new()));
        }
        let (table, index) = runtime.split_once("/index/")?;
        self.lookup(table).map(|id| (id, format!("/index/{index}")))
    }
}

/// `http://host:port/123/queue.fifo` -> `/123/queue.fifo`.
fn url_path(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.find('/').map(|i| &rest[i..])
}

/// Checks that `function_logical_id` is granted, in `template`, every recorded call on the
/// template resource its resource is. Unknown resources, unnamed requests and missing grants
/// are all reported, one line each: `WorkerFunction lacks dynamodb:DeleteItem on StateTable`.
pub fn check_granted(
    template: &Path,
    function_logical_id: &str,
    calls: &[AwsCall],
    names: &ResourceNames,
) -> Result<(), String> {
    let function = function_logical_id;
    let grants = load_grants(template, function)?;
    let mut problems = BTreeSet::new();
    for c in calls.iter().collect::<BTreeSet<_>>() {
        if c.action.starts_with("unknown:") {
            problems.insert(format!(
                "{function} made a request the recorder cannot name as an IAM action: {}",
                c.action
            ));
            continue;
        }
        // `None`: the call names no resource, so only `Resource: "*"` grants it.
        let target = match &c.resource {
            None => None,
            Some(raw) => match names.resolve(raw) {
                Some((logical_id, below)) => Some((raw.as_str(), logical_id, below)),
                None => {
                    problems.insert(format!(
                        "{function} called {} on `{raw}`, which the test's ResourceNames does not \
                         map to a template resource",
                        c.action
                    ));
                    continue;
                }
            },
        };
        let granted = grants.iter().any(|g| {
            grants_action(g, &c.action)
                && g.resources.iter().any(|r| match &target {
                    None => *r == ResourceRef::Any,
                    Some((raw, logical_id, below)) => covers(r, logical_id, below, raw),
                })
        });
        if !granted {
            let on = target.map_or("*".to_string(), |(_, id, below)| format!("{id}{below}"));
            problems.insert(format!("{function} lacks {} on {on}", c.action));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "IAM policy gaps in {} ({} recorded calls):\n  {}",
        template.display(),
        calls.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n  ")
    ))
}

fn grants_action(grant: &Grant, action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    grant
        .actions
        .iter()
        .any(|pattern| glob(&pattern.to_ascii_lowercase(), &action))
}

/// Attributes that name the resource itself (not, say, a table's stream).
fn names_resource(attribute: &str) -> bool {
    matches!(attribute, "Arn" | "QueueName" | "QueueUrl" | "Name" | "Id")
}

fn covers(grant: &ResourceRef, logical_id: &str, below: &str, raw: &str) -> bool {
    match grant {
        ResourceRef::Any => true,
        ResourceRef::Resource {
            logical_id: id,
            attribute,
            suffix,
        } => {
            id == logical_id
                && attribute.as_deref().is_none_or(names_resource)
                && glob(suffix, below)
        }
        ResourceRef::Literal(literal) => literal_covers(literal, raw),
    }
}

/// Best effort for a literal ARN or name: matched against the runtime name, and against its
/// last path segment (a queue URL's queue name).
fn literal_covers(literal: &str, raw: &str) -> bool {
    let tail = if literal.starts_with("arn:") {
        ["table/", "parameter", "secret:"]
            .iter()
            .find_map(|marker| literal.split_once(marker).map(|(_, t)| t))
            .unwrap_or_else(|| literal.rsplit(':').next().unwrap_or(literal))
    } else {
        literal
    };
    let last = raw.rsplit('/').next().unwrap_or(raw);
    [literal, tail]
        .iter()
        .any(|pattern| glob(pattern, raw) || glob(pattern, last))
}

/// IAM wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const REAL_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");

    fn temp_template(yaml: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "scim-relay-iam-{}.yaml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, yaml).expect("write the temporary template");
        path
    }

    fn c(action: &str, resource: &str) -> AwsCall {
        call(action.to_string(), Some(resource.to_string()))
    }

    fn json_headers(target: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", target.parse().expect("header value"));
        headers.insert(
            "content-type",
            "application/x-amz-json-1.0".parse().expect("header value"),
        );
        headers
    }

    #[test]
    fn the_real_template_grants_each_function() {
        let path = Path::new(REAL_TEMPLATE);
        for function in ["InboundFunction", "WorkerFunction", "SweeperFunction"] {
            assert!(
                !function_grants(path, function).is_empty(),
                "no grants found for {function}"
            );
        }
        let names = ResourceNames::new()
            .with("relay-state-abc", "StateTable")
            .with("http://127.0.0.1:5000/123456789012/work.fifo", "WorkQueue")
            .with(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:okta-AbCdEf",
                "OktaSharedSecret",
            );
        let worker = [c("dynamodb:GetItem", "relay-state-abc")];
        assert_eq!(
            check_granted(path, "WorkerFunction", &worker, &names),
            Ok(())
        );
        // Through the SAM policy templates.
        let inbound = [
            c(
                "sqs:SendMessage",
                "http://localhost:5000/123456789012/work.fifo",
            ),
            c(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:okta-AbCdEf",
            ),
        ];
        assert_eq!(
            check_granted(path, "InboundFunction", &inbound, &names),
            Ok(())
        );
        // Through `!Sub ${StateTable.Arn}/index/invites-due`.
        let sweeper = [c("dynamodb:Query", "relay-state-abc/index/invites-due")];
        assert_eq!(
            check_granted(path, "SweeperFunction", &sweeper, &names),
            Ok(())
        );
    }

    const SMALL: &str = r#"
Transform: AWS::Serverless-2016-10-31
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  Secret:
    Type: AWS::SecretsManager::Secret
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - AWSSecretsManagerGetSecretValuePolicy:
            SecretArn: !Ref Secret
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:PutItem]
              Resource: !GetAtt Table.Arn
            - Effect: Allow
              Action: dynamodb:Query
              Resource:
                Fn::Sub: "${Table.Arn}/index/*"
  Wild:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: dynamodb:*
              Resource: {"Fn::GetAtt": [Table, Arn]}
            - Effect: Allow
              Action: ["sqs:Get*", "sqs:SendMessage*"]
              Resource: {"Ref": "Queue"}
            - Effect: Allow
              Action: "*:Describe*"
              Resource: "*"
"#;

    fn small_names() -> ResourceNames {
        ResourceNames::new()
            .with("tbl", "Table")
            .with("http://127.0.0.1:5000/1/q.fifo", "Queue")
            .with("arn:secret", "Secret")
    }

    #[test]
    fn a_missing_action_fails_with_the_function_action_and_resource() {
        let path = temp_template(SMALL);
        let names = small_names();
        let granted = [
            c("dynamodb:GetItem", "tbl"),
            c("dynamodb:PutItem", "tbl"),
            c("dynamodb:Query", "tbl/index/by-date"),
            c("secretsmanager:GetSecretValue", "arn:secret"),
        ];
        assert_eq!(check_granted(&path, "Fn", &granted, &names), Ok(()));

        let missing = [
            c("dynamodb:GetItem", "tbl"),
            c("dynamodb:DeleteItem", "tbl"),
            c("dynamodb:Scan", "tbl"),
            // Query is granted on the index, not on the table.
            c("dynamodb:Query", "tbl"),
        ];
        let err = check_granted(&path, "Fn", &missing, &names).expect_err("gaps");
        assert!(
            err.contains("Fn lacks dynamodb:DeleteItem on Table"),
            "{err}"
        );
        assert!(err.contains("Fn lacks dynamodb:Scan on Table"), "{err}");
        assert!(err.contains("Fn lacks dynamodb:Query on Table"), "{err}");
        assert!(!err.contains("GetItem"), "{err}");

        let unknown = [c("dynamodb:GetItem", "other-table")];
        let err = check_granted(&path, "Fn", &unknown, &names).expect_err("unknown table");
        assert!(err.contains("`other-table`"), "{err}");

        let unnamed = [call("unknown:GET /".into(), None)];
        let err = check_granted(&path, "Fn", &unnamed, &names).expect_err("unnamed request");
        assert!(err.contains("unknown:GET /"), "{err}");

        let err = check_granted(&path, "Nope", &granted, &names).expect_err("no such function");
        assert!(err.contains("no resource Nope"), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn wildcard_actions_match() {
        let path = temp_template(SMALL);
        let names = small_names();
        let calls = [
            c("dynamodb:DeleteItem", "tbl"),
            c("dynamodb:Scan", "tbl"),
            c("sqs:GetQueueAttributes", "http://localhost:5000/1/q.fifo"),
            c("sqs:SendMessage", "http://127.0.0.1:5000/1/q.fifo"),
            call("sqs:DescribeSomething".into(), None),
        ];
        assert_eq!(check_granted(&path, "Wild", &calls, &names), Ok(()));
        let err = check_granted(
            &path,
            "Wild",
            &[c("sqs:DeleteMessage", "http://127.0.0.1:5000/1/q.fifo")],
            &names,
        )
        .expect_err("sqs:Get* is not sqs:DeleteMessage");
        assert!(
            err.contains("Wild lacks sqs:DeleteMessage on Queue"),
            "{err}"
        );
        // `dynamodb:*` on the table does not reach its indexes.
        let err = check_granted(&path, "Wild", &[c("dynamodb:Query", "tbl/index/i")], &names)
            .expect_err("index not granted");
        assert!(err.contains("on Table/index/i"), "{err}");

        assert!(glob("sqs:sendmessage*", "sqs:sendmessagebatch"));
        assert!(glob("*", ""));
        assert!(glob("a?c*", "abcdef"));
        assert!(!glob("dynamodb:get*", "dynamodb:putitem"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_template_reader_resolves_short_and_long_forms() {
        let grants = function_grants(Path::new(REAL_TEMPLATE), "WorkerFunction");
        assert!(grants.iter().any(|g| g.actions == ["sqs:SendMessage*"]
            && g.resources
                == [ResourceRef::Resource {
                    logical_id: "DeadLetterQueue".into(),
                    attribute: Some("QueueName".into()),
                    suffix: String::new(),
                }]));
        let sweeper = function_grants(Path::new(REAL_TEMPLATE), "SweeperFunction");
        assert!(sweeper
            .iter()
            .any(|g| g.resources.contains(&ResourceRef::Resource {
                logical_id: "StateTable".into(),
                attribute: Some("Arn".into()),
                suffix: "/index/invites-due".into(),
            })));
        let yaml: Yaml = serde_yaml::from_str(
            r#"
a: !Sub "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${T}/index/*"
b: {"Fn::Sub": ["arn:aws:sqs:${AWS::Region}:1:${q}", {"q": {"Fn::GetAtt": ["Q", "QueueName"]}}]}
c: "arn:aws:dynamodb:*:*:table/fixed"
d: !If [Cond, "*", "x"]
"#,
        )
        .expect("yaml");
        let get = |k: &str| resource_ref(yaml.get(k).expect("key"));
        assert_eq!(
            get("a"),
            ResourceRef::Resource {
                logical_id: "T".into(),
                attribute: None,
                suffix: "/index/*".into()
            }
        );
        assert_eq!(
            get("b"),
            ResourceRef::Resource {
                logical_id: "Q".into(),
                attribute: Some("QueueName".into()),
                suffix: String::new()
            }
        );
        assert_eq!(
            get("c"),
            ResourceRef::Literal("arn:aws:dynamodb:*:*:table/fixed".into())
        );
        assert!(literal_covers("arn:aws:dynamodb:*:*:table/fixed", "fixed"));
        assert!(!literal_covers("arn:aws:dynamodb:*:*:table/fixed", "other"));
        // What cannot be evaluated grants nothing.
        assert!(!covers(&get("d"), "X", "", "anything"));
    }

    #[test]
    fn parses_dynamodb_transactions_per_item_and_table() {
        let body = br#"{"TransactItems":[
            {"Put":{"TableName":"state","Item":{"pk":{"S":"USER#1"}},"ConditionExpression":"attribute_not_exists(pk)"}},
            {"Put":{"TableName":"state","Item":{"pk":{"S":"EVENT#1"}}}},
            {"ConditionCheck":{"TableName":"locks","Key":{"pk":{"S":"L"}},"ConditionExpression":"x"}},
            {"Delete":{"TableName":"arn:aws:dynamodb:us-east-1:1:table/old","Key":{"pk":{"S":"O"}}}}
        ]}"#;
        let calls = parse_call(&json_headers("DynamoDB_20120810.TransactWriteItems"), body);
        assert_eq!(
            calls,
            [
                c("dynamodb:PutItem", "state"),
                c("dynamodb:ConditionCheckItem", "locks"),
                c("dynamodb:DeleteItem", "old"),
            ]
        );
        let query =
            br#"{"TableName":"state","IndexName":"invites-due","KeyConditionExpression":"a = :a"}"#;
        assert_eq!(
            parse_call(&json_headers("DynamoDB_20120810.Query"), query),
            [c("dynamodb:Query", "state/index/invites-due")]
        );
        let batch = br#"{"RequestItems":{"a":[],"b":[]}}"#;
        assert_eq!(
            parse_call(&json_headers("DynamoDB_20120810.BatchWriteItem"), batch),
            [
                c("dynamodb:BatchWriteItem", "a"),
                c("dynamodb:BatchWriteItem", "b")
            ]
        );
    }

    #[test]
    fn parses_sqs_secrets_and_ssm_json() {
        let url = "http://127.0.0.1:5000/123456789012/work.fifo";
        let send = format!(r#"{{"QueueUrl":"{url}","MessageBody":"x","MessageGroupId":"g"}}"#);
        assert_eq!(
            parse_call(&json_headers("AmazonSQS.SendMessage"), send.as_bytes()),
            [c("sqs:SendMessage", url)]
        );
        let batch = format!(r#"{{"QueueUrl":"{url}","Entries":[]}}"#);
        assert_eq!(
            parse_call(
                &json_headers("AmazonSQS.SendMessageBatch"),
                batch.as_bytes()
            ),
            [c("sqs:SendMessage", url)]
        );
        assert_eq!(
            parse_call(
                &json_headers("secretsmanager.GetSecretValue"),
                br#"{"SecretId":"arn:aws:secretsmanager:us-east-1:1:secret:k-AbCdEf"}"#
            ),
            [c(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:us-east-1:1:secret:k-AbCdEf"
            )]
        );
        assert_eq!(
            parse_call(
                &json_headers("AmazonSSM.GetParameter"),
                br#"{"Name":"/relay/token","WithDecryption":true}"#
            ),
            [c("ssm:GetParameter", "/relay/token")]
        );
        assert_eq!(
            parse_call(&json_headers("Mystery_2020.DoThing"), b"{}"),
            [call("unknown:Mystery_2020.DoThing".into(), None)]
        );
    }

    #[test]
    fn parses_the_sqs_query_protocol_and_names_the_rest_unknown() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().expect("value"),
        );
        let body = b"Action=ChangeMessageVisibilityBatch&QueueUrl=http%3A%2F%2Flocalhost%3A5000%2F1%2Fq.fifo&Version=2012-11-05";
        assert_eq!(
            parse_call(&headers, body),
            [c(
                "sqs:ChangeMessageVisibility",
                "http://localhost:5000/1/q.fifo"
            )]
        );
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"
                .parse()
                .expect("value"),
        );
        assert_eq!(
            parse_call(&headers, b"Action=SendMessage&QueueUrl=u&MessageBody=a+b"),
            [c("sqs:SendMessage", "u")]
        );
        let none = HeaderMap::new();
        assert!(parse_call(&none, b"").is_empty());
        let uri: Uri = "/2015-03-31/functions".parse().expect("uri");
        assert_eq!(
            record_request(&Method::GET, &uri, &none, b""),
            [call("unknown:GET /2015-03-31/functions".into(), None)]
        );
        let uri: Uri = "/?Action=GetQueueUrl&QueueName=q&Version=2012-11-05"
            .parse()
            .expect("uri");
        assert_eq!(
            record_request(&Method::GET, &uri, &none, b""),
            [c("sqs:GetQueueUrl", "q")]
        );
        assert_eq!(percent_decode("a%2Fb+c%"), "a/b c%");
    }

    /// The proxy against an in-process upstream: answers pass byte for byte, calls are
    /// recorded, and an unreachable upstream is a 502.
    #[tokio::test]
    async fn the_recorder_passes_answers_through_and_records() {
        let body: &'static [u8] = b"\x1f\x8b\x08\x00not-really-gzip\xff\x00";
        let upstream = Router::new().fallback(move |request: Request| async move {
            let target = request
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let host = request
                .headers()
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let sent = to_bytes(request.into_body(), MAX_BODY)
                .await
                .unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::IM_A_TEAPOT;
            let headers = response.headers_mut();
            headers.insert("x-amz-crc32", "12345".parse().expect("value"));
            headers.insert("content-encoding", "gzip".parse().expect("value"));
            headers.insert("x-seen-target", target.parse().expect("value"));
            headers.insert("x-seen-host", host.parse().expect("value"));
            headers.insert("x-seen-len", sent.len().to_string().parse().expect("value"));
            response
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let upstream_url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, upstream).await;
        });

        let recorder = AwsRecorder::start(&upstream_url).await;
        let request_body = r#"{"TableName":"state","Key":{}}"#;
        let answer = reqwest::Client::new()
            .post(format!("{}/", recorder.url))
            .header("x-amz-target", "DynamoDB_20120810.GetItem")
            .header("content-type", "application/x-amz-json-1.0")
            .body(request_body)
            .send()
            .await
            .expect("recorder reachable");
        assert_eq!(answer.status(), StatusCode::IM_A_TEAPOT);
        let headers = answer.headers().clone();
        assert_eq!(headers["x-amz-crc32"], "12345");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["x-seen-target"], "DynamoDB_20120810.GetItem");
        assert_eq!(
            headers["x-seen-host"],
            upstream_url.trim_start_matches("http://")
        );
        assert_eq!(
            headers["x-seen-len"],
            request_body.len().to_string().as_str()
        );
        assert_eq!(&answer.bytes().await.expect("body")[..], body);
        assert_eq!(recorder.calls(), [c("dynamodb:GetItem", "state")]);

        // Nothing listens on port 1.
        let dead = AwsRecorder::start("http://127.0.0.1:1").await;
        let answer = reqwest::Client::new()
            .post(format!("{}/", dead.url))
            .header("x-amz-target", "AmazonSQS.SendMessage")
            .body(r#"{"QueueUrl":"q"}"#)
            .send()
            .await
            .expect("recorder reachable");
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(dead.calls(), [c("sqs:SendMessage", "q")]);
    }
}
