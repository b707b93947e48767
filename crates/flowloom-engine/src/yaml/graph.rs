//! The step graph of a workflow file (for `flowloom graph`), as Mermaid or Graphviz dot.

use serde::Serialize;

use super::model::WorkflowFile;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A `run` step.
    Run,
    /// A `template` step.
    Template,
    /// An `embeddings` step.
    Embeddings,
    /// A `consensus` step.
    Consensus,
    /// A step whose `loop.workflow` is its mode.
    Iterate,
    /// A top-level loop.
    Loop,
}

/// One node: a step or a loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    /// The step or loop name.
    pub name: String,
    /// Its mode.
    pub kind: NodeKind,
    /// The `if` condition, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The workflow it calls (template, loop), when it calls one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<String>,
}

/// One edge: `to` runs after `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphEdge {
    /// The earlier node.
    pub from: String,
    /// The later node.
    pub to: String,
    /// True when written in `needs`; false for the implicit "after the previous step".
    pub explicit: bool,
}

/// Steps and loops with their dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepGraph {
    /// The workflow's name.
    pub workflow: String,
    /// Nodes in declaration order.
    pub nodes: Vec<GraphNode>,
    /// Edges.
    pub edges: Vec<GraphEdge>,
}

impl StepGraph {
    /// The graph of `wf`: `needs` edges; a step without `needs` follows the step declared
    /// before it; loops follow every step that nothing else follows.
    pub fn of(wf: &WorkflowFile) -> Self {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for (i, s) in wf.steps.iter().enumerate() {
            let (kind, calls) = if s.run.is_some() {
                (NodeKind::Run, None)
            } else if let Some(t) = &s.template {
                (NodeKind::Template, Some(t.name.clone()))
            } else if s.embeddings.is_some() {
                (NodeKind::Embeddings, None)
            } else if s.consensus.is_some() {
                (NodeKind::Consensus, None)
            } else {
                (
                    NodeKind::Iterate,
                    s.loop_.as_ref().and_then(|l| l.workflow.clone()),
                )
            };
            nodes.push(GraphNode {
                name: s.name.clone(),
                kind,
                condition: s.condition.clone(),
                calls,
            });
            match &s.needs {
                Some(needs) => edges.extend(needs.iter().map(|n| GraphEdge {
                    from: n.clone(),
                    to: s.name.clone(),
                    explicit: true,
                })),
                None if i > 0 => edges.push(GraphEdge {
                    from: wf.steps[i - 1].name.clone(),
                    to: s.name.clone(),
                    explicit: false,
                }),
                None => {}
            }
        }
        let sinks: Vec<String> = wf
            .steps
            .iter()
            .filter(|s| !edges.iter().any(|e| e.from == s.name))
            .map(|s| s.name.clone())
            .collect();
        let mut prev: Option<String> = None;
        for l in &wf.loops {
            nodes.push(GraphNode {
                name: l.name.clone(),
                kind: NodeKind::Loop,
                condition: None,
                calls: Some(l.workflow.clone()),
            });
            match &prev {
                Some(p) => edges.push(GraphEdge {
                    from: p.clone(),
                    to: l.name.clone(),
                    explicit: false,
                }),
                None => edges.extend(sinks.iter().map(|s| GraphEdge {
                    from: s.clone(),
                    to: l.name.clone(),
                    explicit: false,
                })),
            }
            prev = Some(l.name.clone());
        }
        StepGraph {
            workflow: wf.name.clone(),
            nodes,
            edges,
        }
    }

    /// A Mermaid flowchart.
    ///
    /// ```
    /// # use flowloom_engine::yaml::load_str;
    /// let wf = load_str("$schema: workflow/v2.0\nname: g\nversion: 1.0.0\ndescription: d\nexecution: {provider: mock, model: m}\nsteps:\n  - {name: a, run: hi}\n  - {name: b, run: ho}\n").unwrap();
    /// assert!(wf.graph().to_mermaid().contains("a -.-> b")); // dashed: implicit "after the step before"
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for n in &self.nodes {
            let label = label(n);
            let id = ident(&n.name);
            let shape = match n.kind {
                NodeKind::Consensus => format!("{id}{{{{\"{label}\"}}}}"),
                NodeKind::Loop | NodeKind::Iterate => format!("{id}((\"{label}\"))"),
                NodeKind::Template => format!("{id}[[\"{label}\"]]"),
                _ => format!("{id}[\"{label}\"]"),
            };
            out.push_str(&format!("    {shape}\n"));
        }
        for e in &self.edges {
            let arrow = if e.explicit { "-->" } else { "-.->" };
            out.push_str(&format!(
                "    {} {arrow} {}\n",
                ident(&e.from),
                ident(&e.to)
            ));
        }
        out
    }

    /// A Graphviz dot digraph.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n", esc(&self.workflow));
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Consensus => "diamond",
                NodeKind::Loop | NodeKind::Iterate => "ellipse",
                NodeKind::Template => "component",
                _ => "box",
            };
            out.push_str(&format!(
                "    \"{}\" [label=\"{}\", shape={shape}];\n",
                esc(&n.name),
                esc(&label(n))
            ));
        }
        for e in &self.edges {
            let style = if e.explicit { "" } else { " [style=dashed]" };
            out.push_str(&format!(
                "    \"{}\" -> \"{}\"{style};\n",
                esc(&e.from),
                esc(&e.to)
            ));
        }
        out.push_str("}\n");
        out
    }
}

fn label(n: &GraphNode) -> String {
    let kind = match n.kind {
        NodeKind::Run => "run",
        NodeKind::Template => "template",
        NodeKind::Embeddings => "embeddings",
        NodeKind::Consensus => "consensus",
        NodeKind::Iterate => "iterate",
        NodeKind::Loop => "loop",
    };
    let mut l = format!("{} ({kind})", n.name);
    if let Some(c) = &n.calls {
        l.push_str(&format!(" → {c}"));
    }
    if n.condition.is_some() {
        l.push_str(" [if]");
    }
    l.replace('"', "'")
}

fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
