//! Where each value of a YAML (or JSON) stream is written. serde_yaml_ng gives values but no
//! positions, so an event parser with source marks (granit-parser, which kube's kubeconfig
//! loader already builds into this binary) reads the same text alongside it and keeps a
//! tree of line/column per node, walked by path.

use granit_parser::{Event, Options, Parser};

/// Where a value starts: 1-based line, 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One step into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    pub fn key(k: &str) -> Self {
        Step::Key(k.to_string())
    }
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(Position),
    Mapping(Position, Vec<(String, Node)>),
    Sequence(Position, Vec<Node>),
}

impl Node {
    fn position(&self) -> Position {
        match self {
            Node::Leaf(p) | Node::Mapping(p, _) | Node::Sequence(p, _) => *p,
        }
    }

    fn child(&self, step: &Step) -> Option<&Node> {
        match (self, step) {
            // The last duplicate key wins, as serde_yaml_ng's last value does.
            (Node::Mapping(_, entries), Step::Key(k)) => entries
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, n)| n),
            (Node::Sequence(_, items), Step::Index(i)) => items.get(*i),
            _ => None,
        }
    }
}

/// The positions of one document.
#[derive(Debug, Clone)]
pub struct DocumentPositions {
    root: Node,
}

impl DocumentPositions {
    /// The position of the value at `path`, or of the deepest ancestor that exists (a
    /// container without `image:` is located at its own entry).
    pub fn locate(&self, path: &[Step]) -> Position {
        let mut node = &self.root;
        for step in path {
            match node.child(step) {
                Some(next) => node = next,
                None => break,
            }
        }
        node.position()
    }
}

/// A collection being read, with the key that waits for its value (mappings).
enum Frame {
    Mapping {
        position: Position,
        anchor: usize,
        entries: Vec<(String, Node)>,
        key: Option<String>,
    },
    Sequence {
        position: Position,
        anchor: usize,
        items: Vec<Node>,
    },
}

/// A node just finished: a value, or (in key position) the text of a key.
struct Done {
    node: Node,
    /// The scalar text, for use as a mapping key.
    text: Option<String>,
}

/// YAML's null scalars (1.2 core schema, and libyaml's empty document): documents that
/// serde_yaml_ng reads as `null`, which the caller skips.
fn is_null_scalar(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// The positions of every document of `text` that is not empty, in order. `None` when the
/// event parser refuses the text: the values still come from serde_yaml_ng, only their
/// positions are unknown.
pub fn documents(text: &str) -> Option<Vec<DocumentPositions>> {
    let mut options = Options::default();
    options.set_emit_comments(false);
    let parser = Parser::new_from_str_with_options(text, options);
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored nodes of the current document: an alias is located where its anchor's
    // content is written (that is where the image string is).
    let mut anchors: Vec<(usize, Node, Option<String>)> = Vec::new();
    for event in parser {
        let (event, span) = event.ok()?;
        let position = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let done = match event {
            Event::DocumentStart(..) => {
                stack.clear();
                anchors.clear();
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Frame::Mapping {
                    position,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                continue;
            }
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Frame::Sequence {
                    position,
                    anchor,
                    items: Vec::new(),
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (node, anchor) = match stack.pop()? {
                    Frame::Mapping {
                        position,
                        anchor,
                        entries,
                        ..
                    } => (Node::Mapping(position, entries), anchor),
                    Frame::Sequence {
                        position,
                        anchor,
                        items,
                    } => (Node::Sequence(position, items), anchor),
                };
                if anchor != 0 {
                    anchors.push((anchor, node.clone(), None));
                }
                Done { node, text: None }
            }
            Event::Scalar(value, _, anchor, _) => {
                let node = Node::Leaf(position);
                let text = value.into_owned();
                if anchor != 0 {
                    anchors.push((anchor, node.clone(), Some(text.clone())));
                }
                Done {
                    node,
                    text: Some(text),
                }
            }
            Event::Alias(id) => match anchors.iter().rev().find(|(a, _, _)| *a == id) {
                Some((_, node, text)) => Done {
                    node: node.clone(),
                    text: text.clone(),
                },
                None => Done {
                    node: Node::Leaf(position),
                    text: None,
                },
            },
            // Stream markers, document ends, comments, anchor metadata: no node.
            _ => continue,
        };
        match stack.last_mut() {
            None => {
                let empty = matches!(&done.node, Node::Leaf(_))
                    && done.text.as_deref().is_some_and(is_null_scalar);
                if !empty {
                    out.push(DocumentPositions { root: done.node });
                }
            }
            Some(Frame::Sequence { items, .. }) => items.push(done.node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                // A complex key (a mapping as a key) cannot name a Kubernetes field.
                None => *key = Some(done.text.unwrap_or_default()),
                Some(k) => entries.push((k, done.node)),
            },
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn path(steps: &[&str]) -> Vec<Step> {
        steps
            .iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Step::Index(i),
                Err(_) => Step::key(s),
            })
            .collect()
    }

    const BLOCK: &str = "# a comment\nkind: Pod\nspec:\n  containers:\n  - name: web\n    image: r.io/web:1\n  - {name: side, image: \"r.io/side:2\"}\n";

    #[rstest]
    #[case::block_scalar(&["spec", "containers", "0", "image"], 6, 12)]
    #[case::flow_mapping_value(&["spec", "containers", "1", "image"], 7, 25)]
    #[case::sequence_entry(&["spec", "containers", "1"], 7, 5)]
    #[case::missing_field_falls_back_to_its_parent(&["spec", "containers", "0", "ports"], 5, 5)]
    #[case::missing_index_falls_back_to_the_list(&["spec", "containers", "9", "image"], 5, 5)]
    #[case::missing_list_falls_back_to_the_spec(&["spec", "volumes", "0"], 4, 3)]
    fn values_are_located_by_path(
        #[case] steps: &[&str],
        #[case] line: usize,
        #[case] column: usize,
    ) {
        let docs = documents(BLOCK).expect("parses");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].locate(&path(steps)), Position { line, column });
    }

    #[test]
    fn empty_documents_are_skipped_like_serde_yaml_ng_nulls() {
        let text = "---\n---\nkind: A\n---\n~\n---\nkind: B\n...\n";
        let docs = documents(text).expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].locate(&path(&["kind"])).line, 7);
    }

    #[test]
    fn json_is_located_like_yaml() {
        let text = "{\n  \"kind\": \"Pod\",\n  \"spec\": {\"containers\": [\n    {\"name\": \"a\", \"image\": \"r.io/a\"}\n  ]}\n}\n";
        let docs = documents(text).expect("parses");
        let p = docs[0].locate(&path(&["spec", "containers", "0", "image"]));
        assert_eq!(
            p,
            Position {
                line: 4,
                column: 28
            }
        );
    }

    #[test]
    fn an_alias_is_located_at_its_anchor() {
        let text = "a: &img r.io/x:1\nspec:\n  containers:\n  - image: *img\n";
        let docs = documents(text).expect("parses");
        let p = docs[0].locate(&path(&["spec", "containers", "0", "image"]));
        assert_eq!(p, Position { line: 1, column: 9 });
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "{\"é\": 1, \"image\": \"x\"}\n";
        let docs = documents(text).expect("parses");
        assert_eq!(docs[0].locate(&path(&["image"])).column, 19);
    }

    #[test]
    fn text_the_parser_refuses_has_no_positions() {
        assert!(documents("a: [unclosed\n").is_none());
    }
}
