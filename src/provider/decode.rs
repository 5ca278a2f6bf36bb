//! Decoding JSON and YAML the way the kubelet's strict codec does
//! (`k8s.io/apimachinery/pkg/runtime/serializer/json/json.go Serializer.Decode` with
//! `serializer.EnableStrict`, over `sigs.k8s.io/json UnmarshalStrict`): a document is read
//! into a [`Node`] tree that keeps duplicate keys, then walked by a [`Strict`] decoder that
//! reports unknown and duplicate fields with sigs.k8s.io/json's paths, type mismatches with
//! Go's `encoding/json` wording, and the first failure of a custom unmarshaler as fatal.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::golang::{GoDuration, parse_duration, quote};
use crate::verdict::excerpt;

/// A JSON value that remembers key order and duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// What Go's `UnmarshalTypeError` calls this JSON value.
    fn go_kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "bool",
            Node::Number(_) => "number",
            Node::String(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
        }
    }
}

/// A parsed document: its tree, and for YAML the duplicate keys go-yaml's strict pass
/// reports.
#[derive(Debug)]
pub struct Document {
    pub node: Node,
    /// `yaml.YAMLToJSONStrict`'s error, which the kubelet lists first among strict errors.
    yaml_strict_error: Option<String>,
    /// What `Object 'Kind' is missing in '…'` quotes.
    original: String,
}

/// At most this much of a document is quoted back in a message.
const QUOTE_LIMIT: usize = 200;

impl Document {
    /// `runtime.NewMissingKindErr` and friends quote the document; keep it short.
    fn quoted(&self) -> String {
        excerpt(&self.original, QUOTE_LIMIT)
    }
}

/// Read JSON when the first non-space character is `{` (apimachinery
/// `utilyaml.IsJSONBuffer`), YAML otherwise, as the codec factory's recognizer does.
pub fn parse_document(bytes: &[u8]) -> Result<Document, String> {
    let original = String::from_utf8_lossy(bytes).into_owned();
    let trimmed = original.trim_start();
    if trimmed.starts_with('{') {
        let node = serde_json::from_slice::<Node>(bytes)
            .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
        return Ok(Document {
            node,
            yaml_strict_error: None,
            original,
        });
    }
    let (node, duplicates, _) = parse_yaml(bytes, None).map_err(|(e, _)| format!("yaml: {e}"))?;
    let yaml_strict_error = (duplicates > 0).then(|| yaml_duplicate_error(bytes, duplicates));
    Ok(Document {
        node: normalize_yaml(node),
        yaml_strict_error,
        original,
    })
}

/// JSON only (a plugin's stdout is read with `json.DefaultMetaFactory.Interpret`).
pub fn parse_json(bytes: &[u8]) -> Result<Node, String> {
    serde_json::from_slice::<Node>(bytes).map_err(|e| e.to_string())
}

/// `sigs.k8s.io/yaml YAMLToJSON` turns a YAML mapping into a Go map and marshals it: the
/// last of duplicate keys wins and the keys come out sorted.
fn normalize_yaml(node: Node) -> Node {
    match node {
        Node::Array(items) => Node::Array(items.into_iter().map(normalize_yaml).collect()),
        Node::Object(pairs) => {
            let mut map: std::collections::BTreeMap<String, Node> = Default::default();
            for (k, v) in pairs {
                map.insert(k, normalize_yaml(v));
            }
            Node::Object(map.into_iter().collect())
        }
        other => other,
    }
}

/// go-yaml v2's strict unmarshal error for duplicate keys: one
/// `line N: key "k" already set in map` per duplicate, in document order.
fn yaml_duplicate_error(bytes: &[u8], duplicates: usize) -> String {
    let mut lines = Vec::new();
    for target in 0..duplicates.min(20) {
        if let Err((e, Some(key))) = parse_yaml(bytes, Some(target)) {
            let line = e
                .location()
                .map(|l| format!("line {}: ", l.line()))
                .unwrap_or_default();
            lines.push(format!("  {line}key {} already set in map", quote(&key)));
        }
    }
    format!("yaml: unmarshal errors:\n{}", lines.join("\n"))
}

/// The first YAML document (go-yaml reads only that one); `fail_at` makes the n-th
/// duplicate key an error so that its line can be learned from the parser.
type YamlParse = (Node, usize, Option<String>);

fn parse_yaml(
    bytes: &[u8],
    fail_at: Option<usize>,
) -> Result<YamlParse, (serde_yaml_ng::Error, Option<String>)> {
    let state = YamlState {
        duplicates: Cell::new(0),
        fail_at,
        failed_key: Default::default(),
    };
    match serde_yaml_ng::Deserializer::from_slice(bytes).next() {
        None => Ok((Node::Null, 0, None)),
        Some(doc) => match (NodeSeed { yaml: Some(&state) }).deserialize(doc) {
            Ok(node) => Ok((node, state.duplicates.get(), None)),
            Err(e) => Err((e, state.failed_key.take())),
        },
    }
}

struct YamlState {
    duplicates: Cell<usize>,
    fail_at: Option<usize>,
    /// The key that made `fail_at` fail.
    failed_key: std::cell::RefCell<Option<String>>,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NodeSeed { yaml: None }.deserialize(d)
    }
}

#[derive(Clone, Copy)]
struct NodeSeed<'s> {
    yaml: Option<&'s YamlState>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs: Vec<(String, Node)> = Vec::new();
        loop {
            let seed = KeySeed {
                yaml: self.yaml,
                seen: &pairs,
            };
            let Some(key) = map.next_key_seed(seed)? else {
                break;
            };
            let value = map.next_value_seed(self)?;
            pairs.push((key, value));
        }
        Ok(Node::Object(pairs))
    }
}

/// A mapping key as a string (YAML keys may be numbers or booleans; `YAMLToJSON`
/// stringifies them), counting duplicates on the way.
struct KeySeed<'s> {
    yaml: Option<&'s YamlState>,
    seen: &'s [(String, Node)],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    /// The duplicate check runs inside the key's own visitor, so that serde_yaml_ng marks
    /// the error with the key's line.
    fn key<E: de::Error>(self, key: String) -> Result<String, E> {
        if let Some(state) = self.yaml
            && self.seen.iter().any(|(k, _)| *k == key)
        {
            let n = state.duplicates.get();
            state.duplicates.set(n + 1);
            if state.fail_at == Some(n) {
                *state.failed_key.borrow_mut() = Some(key);
                return Err(E::custom("duplicate key"));
            }
        }
        Ok(key)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.key(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.key("null".to_string())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        self.key("null".to_string())
    }
}

/// `json.DefaultMetaFactory.Interpret`: `apiVersion` and `kind` read as `encoding/json`
/// reads them into a plain struct (case-insensitive keys, the last one wins).
pub struct TypeMeta {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl TypeMeta {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub fn interpret(node: &Node) -> Result<TypeMeta, String> {
    let (mut api_version, mut kind) = (String::new(), String::new());
    if let Node::Object(pairs) = node {
        for (target, name) in [(&mut api_version, "apiVersion"), (&mut kind, "kind")] {
            // encoding/json prefers an exact key and falls back to a case-insensitive one.
            let exact = pairs.iter().rev().find(|(k, _)| k == name);
            let found = exact.or_else(|| {
                pairs
                    .iter()
                    .rev()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            });
            match found.map(|(_, v)| v) {
                None | Some(Node::Null) => {}
                Some(Node::String(s)) => *target = s.clone(),
                Some(other) => {
                    return Err(format!(
                        "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go struct field .{name} of type string",
                        other.go_kind()
                    ));
                }
            }
        }
    } else if !matches!(node, Node::Null) {
        return Err(format!(
            "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            node.go_kind()
        ));
    }
    // schema.ParseGroupVersion.
    let (group, version) = match api_version.matches('/').count() {
        0 => (String::new(), api_version),
        1 => {
            let (g, v) = api_version.split_once('/').unwrap_or_default();
            (g.to_string(), v.to_string())
        }
        _ => return Err(format!("unexpected GroupVersion string: {api_version}")),
    };
    Ok(TypeMeta {
        group,
        version,
        kind,
    })
}

/// The checks `Serializer.Decode` makes before it decodes into a registered type:
/// `kind` and `apiVersion` must be there. The caller then checks the group, version and
/// kind against what it has registered.
pub fn type_meta(doc: &Document) -> Result<TypeMeta, String> {
    let meta = interpret(&doc.node)?;
    if meta.kind.is_empty() {
        return Err(format!("Object 'Kind' is missing in '{}'", doc.quoted()));
    }
    if meta.version.is_empty() {
        return Err(format!(
            "Object 'apiVersion' is missing in '{}'",
            doc.quoted()
        ));
    }
    Ok(meta)
}

/// `runtime.notRegisteredErr` for a group/version/kind the plugin scheme does not know.
pub fn not_registered(meta: &TypeMeta) -> String {
    format!(
        "no kind {} is registered for version {} in scheme {}",
        quote(&meta.kind),
        quote(&meta.group_version()),
        quote("pkg/credentialprovider/plugin/plugin.go")
    )
}

/// A failure that stops decoding at once: a custom unmarshaler's error (Go returns it
/// without finishing the document).
#[derive(Debug)]
pub struct Fatal(pub String);

/// Go's `encoding/json` decode state in sigs.k8s.io/json's strict mode.
pub struct Strict {
    /// `strictFieldStack`: `providers[0].name`.
    path: String,
    /// `errorContext.FieldStack`: struct field names only, no indices.
    fields: Vec<&'static str>,
    /// `errorContext.Struct`.
    struct_name: Option<&'static str>,
    strict_errors: Vec<String>,
    /// The first `UnmarshalTypeError` (Go keeps decoding and reports it at the end).
    type_error: Option<String>,
    yaml_strict_error: Option<String>,
}

impl Strict {
    pub fn new(doc: &Document) -> Self {
        Self {
            path: String::new(),
            fields: Vec::new(),
            struct_name: None,
            strict_errors: Vec::new(),
            type_error: None,
            yaml_strict_error: doc.yaml_strict_error.clone(),
        }
    }

    /// For a plugin's JSON response.
    pub fn for_json() -> Self {
        Self {
            path: String::new(),
            fields: Vec::new(),
            struct_name: None,
            strict_errors: Vec::new(),
            type_error: None,
            yaml_strict_error: None,
        }
    }

    /// The result, as `Serializer.unmarshal` + `runtime.NewStrictDecodingError` word it: a
    /// type error wins; otherwise every strict error, YAML's first.
    pub fn finish(self) -> Result<(), String> {
        if let Some(e) = self.type_error {
            return Err(e);
        }
        let all: Vec<String> = self
            .yaml_strict_error
            .into_iter()
            .chain(self.strict_errors)
            .collect();
        if all.is_empty() {
            Ok(())
        } else {
            Err(format!("strict decoding error: {}", all.join(", ")))
        }
    }

    /// `newFieldError` + `saveStrictError`: deduplicated, at most 100.
    fn strict_error(&mut self, kind: &str, field: &str) {
        let path = if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        };
        let message = format!("{kind} {}", quote(&path));
        if self.strict_errors.len() < 100 && !self.strict_errors.contains(&message) {
            self.strict_errors.push(message);
        }
    }

    /// `UnmarshalTypeError` with `addErrorContext`.
    fn type_message(&self, value: &str, go_type: &str) -> String {
        match self.struct_name {
            Some(s) => format!(
                "json: cannot unmarshal {value} into Go struct field {s}.{} of type {go_type}",
                self.fields.join(".")
            ),
            None => format!("json: cannot unmarshal {value} into Go value of type {go_type}"),
        }
    }

    fn mismatch(&mut self, node: &Node, go_type: &str) {
        if self.type_error.is_none() {
            self.type_error = Some(self.type_message(node.go_kind(), go_type));
        }
    }

    /// A struct: known fields decoded by `field`, unknown and repeated ones recorded.
    pub fn object<'n>(
        &mut self,
        node: &'n Node,
        go_type: &str,
        struct_name: &'static str,
        fields: &[&'static str],
        mut field: impl FnMut(&mut Self, &'static str, &'n Node) -> Result<(), Fatal>,
    ) -> Result<(), Fatal> {
        let pairs = match node {
            Node::Null => return Ok(()),
            Node::Object(pairs) => pairs,
            other => {
                self.mismatch(other, go_type);
                return Ok(());
            }
        };
        let mut seen = vec![false; fields.len()];
        for (key, value) in pairs {
            let Some(i) = fields.iter().position(|f| f == key) else {
                self.strict_error("unknown field", key);
                continue;
            };
            if seen[i] {
                self.strict_error("duplicate field", fields[i]);
            }
            seen[i] = true;
            let (path_len, fields_len, outer) =
                (self.path.len(), self.fields.len(), self.struct_name);
            self.push_key(fields[i]);
            self.fields.push(fields[i]);
            self.struct_name = Some(struct_name);
            field(self, fields[i], value)?;
            self.path.truncate(path_len);
            self.fields.truncate(fields_len);
            self.struct_name = outer;
        }
        Ok(())
    }

    /// A `map[string]T`: repeated keys recorded, each value decoded by `value`.
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        go_type: &str,
        mut value: impl FnMut(&mut Self, &'n str, &'n Node) -> Result<(), Fatal>,
    ) -> Result<(), Fatal> {
        let pairs = match node {
            Node::Null => return Ok(()),
            Node::Object(pairs) => pairs,
            other => {
                self.mismatch(other, go_type);
                return Ok(());
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        for (key, v) in pairs {
            if seen.contains(&key.as_str()) {
                self.strict_error("duplicate field", key);
            }
            seen.push(key);
            let path_len = self.path.len();
            self.push_key(key);
            value(self, key, v)?;
            self.path.truncate(path_len);
        }
        Ok(())
    }

    /// A slice: each element decoded by `item`, with `[i]` on the strict path.
    pub fn array<'n>(
        &mut self,
        node: &'n Node,
        go_type: &str,
        mut item: impl FnMut(&mut Self, &'n Node) -> Result<(), Fatal>,
    ) -> Result<(), Fatal> {
        let items = match node {
            Node::Null => return Ok(()),
            Node::Array(items) => items,
            other => {
                self.mismatch(other, go_type);
                return Ok(());
            }
        };
        for (i, element) in items.iter().enumerate() {
            let path_len = self.path.len();
            self.path.push_str(&format!("[{i}]"));
            item(self, element)?;
            self.path.truncate(path_len);
        }
        Ok(())
    }

    pub fn string(&mut self, node: &Node, go_type: &str) -> Option<String> {
        match node {
            Node::String(s) => Some(s.clone()),
            Node::Null => None,
            other => {
                self.mismatch(other, go_type);
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node) -> Result<Vec<String>, Fatal> {
        let mut out = Vec::new();
        self.array(node, "[]string", |d, item| {
            if let Some(s) = d.string(item, "string") {
                out.push(s);
            } else if matches!(item, Node::Null) {
                // Go decodes null into a slice element as the zero value.
                out.push(String::new());
            }
            Ok(())
        })?;
        Ok(out)
    }

    pub fn bool(&mut self, node: &Node) -> Option<bool> {
        match node {
            Node::Bool(b) => Some(*b),
            Node::Null => None,
            other => {
                self.mismatch(other, "bool");
                None
            }
        }
    }

    /// `metav1.Duration.UnmarshalJSON`: a JSON string for `time.ParseDuration`; anything
    /// else stops the decode. `null` leaves the pointer nil.
    pub fn duration(&mut self, node: &Node) -> Result<Option<GoDuration>, Fatal> {
        match node {
            Node::Null => Ok(None),
            Node::String(s) => parse_duration(s).map(Some).map_err(Fatal),
            other => Err(Fatal(self.type_message(other.go_kind(), "string"))),
        }
    }

    fn push_key(&mut self, key: &str) {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_duplicate_keys_in_order() {
        let node = parse_json(br#"{"b":1,"a":2,"b":3}"#).expect("valid");
        let Node::Object(pairs) = node else {
            panic!("an object")
        };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn yaml_mappings_come_out_sorted_with_the_last_duplicate() {
        let doc = parse_document(b"b: 1\na: 2\nb: three\n").expect("valid");
        assert_eq!(
            doc.node,
            Node::Object(vec![
                ("a".to_string(), Node::Number("2".to_string())),
                ("b".to_string(), Node::String("three".to_string())),
            ])
        );
        assert_eq!(
            doc.yaml_strict_error.as_deref(),
            Some("yaml: unmarshal errors:\n  line 3: key \"b\" already set in map")
        );
    }

    #[test]
    fn a_document_starting_with_a_brace_is_json() {
        let err = parse_document(b"  {kind: x}").expect_err("not JSON");
        assert!(
            err.starts_with("couldn't get version/kind; json parse error: "),
            "{err}"
        );
    }
}
