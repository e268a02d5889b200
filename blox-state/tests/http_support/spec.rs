//! A small Swagger 2.0 schema checker for the Blox v0.3 spec: `$ref`s,
//! `type` (object, array, string, integer, number, boolean), `enum`,
//! `required` and `properties` of objects, `items` of arrays. Extra
//! properties are allowed.

use serde_json::Value;

/// A loaded Blox v0.3 spec.
pub struct Spec(Value);

impl Spec {
    /// Loads `spec/blox-v0.3/cluster-state-service.swagger.json` from the repository.
    pub fn cluster_state_service() -> Spec {
        Self::load("cluster-state-service.swagger.json")
    }

    /// Loads `spec/blox-v0.3/daemon-scheduler.swagger.json` from the repository.
    pub fn daemon_scheduler() -> Spec {
        Self::load("daemon-scheduler.swagger.json")
    }

    /// Loads `spec/blox-v0.3/{file}` (every crate sits one level below the root).
    fn load(file: &str) -> Spec {
        let path = format!("{}/../spec/blox-v0.3/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        Spec(serde_json::from_str(&text).unwrap())
    }

    /// The schema the spec declares for a response of `GET path` (a spec
    /// path such as `/tasks/{cluster}/{arn}`) with this status.
    pub fn response_schema(&self, path: &str, status: u16) -> &Value {
        self.operation_schema("get", path, status)
    }

    /// The schema the spec declares for a response of `method path`
    /// (`method` in lowercase, as the spec spells it) with this status.
    pub fn operation_schema(&self, method: &str, path: &str, status: u16) -> &Value {
        let schema = &self.0["paths"][path][method]["responses"][status.to_string()]["schema"];
        assert!(
            !schema.is_null(),
            "spec has no schema for {method} {path} {status}"
        );
        schema
    }

    /// Whether the spec declares `status` for `method path` (`method` in
    /// lowercase, `path` as the spec spells it).
    pub fn declares(&self, method: &str, path: &str, status: u16) -> bool {
        let op = &self.0["paths"][path][method];
        assert!(!op.is_null(), "spec has no operation {method} {path}");
        !op["responses"][status.to_string()].is_null()
    }

    /// The definition `name`.
    pub fn definition(&self, name: &str) -> &Value {
        let d = &self.0["definitions"][name];
        assert!(!d.is_null(), "spec has no definition {name}");
        d
    }

    /// Checks a value against a schema; returns every violation found.
    pub fn violations(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out);
        out
    }

    /// Panics with every violation when `value` does not match `schema`.
    pub fn assert_valid(&self, schema: &Value, value: &Value) {
        let v = self.violations(schema, value);
        assert!(
            v.is_empty(),
            "response does not match the spec:\n  {}\nbody: {value:#}",
            v.join("\n  ")
        );
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/definitions/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                self.resolve(self.definition(name))
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some(other) => panic!("unsupported type {other} at {at}"),
            None => true,
        };
        if !ok {
            out.push(format!(
                "{at}: expected {}, found {value}",
                ty.unwrap_or("?")
            ));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let Some(obj) = value.as_object() {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if obj.get(r).is_none_or(Value::is_null) {
                    out.push(format!("{at}: missing required property {r:?}"));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if let Some(v) = obj.get(name) {
                        self.check(sub, v, &format!("{at}.{name}"), out);
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.check(items, v, &format!("{at}[{i}]"), out);
            }
        }
    }
}
