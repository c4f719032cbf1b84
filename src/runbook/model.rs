//! Runbook files: the wire format (what YAML deserializes into, unknown fields denied), and its
//! analysis into a [`Runbook`] — the only type that can run (see just's unresolved/resolved
//! recipes and uv's `OptionsWire`). Every error keeps its file:line:column.
//!
//! ```yaml
//! name: scale-out                       # [a-z0-9-], unique
//! title: Add slaves (水平扩展)
//! description: ...
//! symptoms: [qps, capacity, scale]      # words the incident flow matches
//! inputs:
//!   - name: replicas                    # [a-z_][a-z0-9_]*
//!     type: int                         # int | string | bool | duration | enum
//!     default: 4
//!     min: 1                            # int, duration; `values:` for enum; `pattern:` for string
//!     max: 20
//!     description: The number of slaves wanted.
//! steps:
//!   - id: before                        # [a-z_][a-z0-9_]* (a CEL identifier), unique
//!     title: Nodes before
//!     action: nodes.allocation
//!   - id: scale
//!     title: Scale the slaves
//!     action: deployment.scale
//!     with: {role: slave, replicas: "${{ inputs.replicas }}"}
//!     when: steps.before.output.slaves_fit > 0      # CEL over inputs and earlier steps
//!     on_failure: abort                 # or continue
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_saphyr::Spanned;

use super::args::ArgReader;
use super::catalogue::{self, Action, Effect, PLANNED};
use super::diag::{Diagnostic, Diags, Pos, allowed_help};
use super::expr::{Expr, OutField, Scope, Ty};

/// The largest runbook file accepted.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// The most steps in one runbook.
pub const MAX_STEPS: usize = 200;
/// The most inputs in one runbook.
pub const MAX_INPUTS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookWire {
    pub name: Spanned<String>,
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: Option<Spanned<String>>,
    #[serde(default)]
    pub symptoms: Vec<Spanned<String>>,
    #[serde(default)]
    pub inputs: Vec<Spanned<InputWire>>,
    pub steps: Spanned<Vec<Spanned<StepWire>>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    Int,
    String,
    Bool,
    Duration,
    Enum,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputWire {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub ty: Spanned<InputType>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub default: Option<Spanned<Json>>,
    #[serde(default)]
    pub min: Option<Spanned<Json>>,
    #[serde(default)]
    pub max: Option<Spanned<Json>>,
    #[serde(default)]
    pub values: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
}

/// What to do when a step fails.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the run (the default).
    #[default]
    Abort,
    /// Record the failure and go on with the next step.
    Continue,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepWire {
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: Option<Spanned<String>>,
    pub action: Spanned<String>,
    #[serde(default)]
    pub with: Option<Spanned<BTreeMap<String, Spanned<Json>>>>,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub on_failure: Option<Spanned<OnFailure>>,
}

/// A typed input of a runbook.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: InputType,
    pub description: String,
    /// The default (ints and durations as numbers, durations in seconds).
    pub default: Option<Json>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub values: Vec<String>,
    pub pattern: Option<String>,
    #[serde(skip)]
    regex: Option<regex::Regex>,
}

impl Input {
    /// The CEL type of its value.
    pub fn cel_type(&self) -> Ty {
        match self.ty {
            InputType::Int | InputType::Duration => Ty::Int,
            InputType::String | InputType::Enum => Ty::String,
            InputType::Bool => Ty::Bool,
        }
    }

    /// Checks a value (from the file's default or from `--input`) and normalizes it.
    pub fn check(&self, v: &Json) -> Result<Json, String> {
        let v = match (self.ty, v) {
            (InputType::Int, Json::Number(n)) if n.is_i64() => v.clone(),
            (InputType::Int, Json::String(s)) => Json::from(
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("`{s}` is not an integer"))?,
            ),
            (InputType::Bool, Json::Bool(_)) => v.clone(),
            (InputType::Bool, Json::String(s)) => match s.as_str() {
                "true" => Json::Bool(true),
                "false" => Json::Bool(false),
                _ => return Err(format!("`{s}` is not true or false")),
            },
            (InputType::Duration, Json::Number(n)) if n.is_u64() => v.clone(),
            (InputType::Duration, Json::String(s)) => Json::from(super::args::parse_secs(s)?),
            (InputType::String | InputType::Enum, Json::String(_)) => v.clone(),
            (InputType::String, Json::Number(n)) => Json::String(n.to_string()),
            (ty, other) => {
                return Err(format!(
                    "expected {}, got {}",
                    serde_json::to_value(ty)
                        .ok()
                        .and_then(|t| t.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    super::expr::describe(other)
                ));
            }
        };
        if let Some(n) = v.as_i64() {
            if let Some(min) = self.min
                && n < min
            {
                return Err(format!("{n} is below the minimum {min}"));
            }
            if let Some(max) = self.max
                && n > max
            {
                return Err(format!("{n} is above the maximum {max}"));
            }
        }
        if let Json::String(s) = &v {
            if self.ty == InputType::Enum && !self.values.contains(s) {
                return Err(format!("`{s}` is not one of {}", self.values.join(", ")));
            }
            if let Some(re) = &self.regex
                && !re.is_match(s)
            {
                return Err(format!(
                    "`{s}` does not match the pattern {}",
                    self.pattern.as_deref().unwrap_or_default()
                ));
            }
        }
        Ok(v)
    }
}

/// One step, analysed.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub action: Action,
    pub when: Option<Expr>,
    pub on_failure: OnFailure,
    pub pos: Pos,
}

/// A validated runbook: every action exists, every argument has its type, every reference
/// points to an input or an earlier step.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub title: String,
    pub description: String,
    pub symptoms: Vec<String>,
    pub inputs: Vec<Input>,
    pub steps: Vec<Step>,
    /// Where it was loaded from: `built-in (runbooks/x.yaml)` or a path.
    pub source: String,
}

impl Runbook {
    /// Steps that change something.
    pub fn mutating_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action.effect() == Effect::Mutating)
            .count()
    }

    /// How well a list of words matches the runbook's symptoms, name and title (0 = not at all).
    pub fn score(&self, words: &[String]) -> usize {
        let hay: Vec<String> = self
            .symptoms
            .iter()
            .chain([&self.name, &self.title])
            .map(|s| s.to_lowercase())
            .collect();
        words
            .iter()
            .map(|w| w.to_lowercase())
            .filter(|w| !w.is_empty())
            .map(|w| hay.iter().filter(|h| h.contains(&w)).count())
            .sum()
    }
}

/// Cleans serde-saphyr's message: no location suffix, no advice about its own options.
fn clean(msg: &str) -> String {
    let mut m = msg.to_string();
    if let Some(at) = m.rfind(" at line ") {
        m.truncate(at);
    }
    m = m.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    m
}

/// Loads a runbook from its text: checks the bytes, parses the YAML into the wire type, and
/// analyses it. `file` is how errors name the file.
pub fn load(file: &str, bytes: &[u8], source: &str) -> Result<Runbook, Vec<Diagnostic>> {
    let mut diags = Diags::new(file);
    let at0 = Pos::new(1, 1);
    if bytes.len() > MAX_FILE_BYTES {
        diags.push(
            at0,
            format!(
                "the file is {} bytes; a runbook may be at most {} KiB",
                bytes.len(),
                MAX_FILE_BYTES / 1024
            ),
            Some("split it into smaller runbooks"),
        );
        return Err(diags.into_sorted());
    }
    if let Some(i) = bytes.iter().position(|b| *b == 0) {
        let line = bytes[..i].iter().filter(|b| **b == b'\n').count() + 1;
        diags.push(
            Pos::new(u32::try_from(line).unwrap_or(0), 1),
            format!("this is a binary file (a NUL byte at offset {i}), not a YAML runbook"),
            None::<String>,
        );
        return Err(diags.into_sorted());
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let i = e.valid_up_to();
            let line = bytes[..i].iter().filter(|b| **b == b'\n').count() + 1;
            diags.push(
                Pos::new(u32::try_from(line).unwrap_or(0), 1),
                format!("the file is not UTF-8 text (invalid byte at offset {i}): a binary file?"),
                None::<String>,
            );
            return Err(diags.into_sorted());
        }
    };
    let meaningful = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| !l.is_empty() && l != "---" && l != "...");
    if !meaningful {
        diags.push(
            at0,
            "the file is empty: a runbook needs at least `name`, `title` and `steps`",
            Some("see `newapi-ops runbook show scale-out` for an example"),
        );
        return Err(diags.into_sorted());
    }
    let mut options = serde_saphyr::options::Options::default();
    options.strict_booleans = true;
    let wire: RunbookWire = match serde_saphyr::from_str_with_options(text, options) {
        Ok(w) => w,
        Err(e) => {
            let pos = e.location().map_or(at0, |l| Pos::of(&l));
            let msg = clean(&e.without_snippet().to_string());
            let help = if msg.contains("unknown field") || msg.contains("unknown variant") {
                None
            } else if msg.contains("missing field") {
                Some("a runbook has name, title, steps (and optionally description, symptoms, inputs); a step has id, title, action (and optionally description, with, when, on_failure)".to_string())
            } else {
                None
            };
            diags.push(pos, msg, help);
            return Err(diags.into_sorted());
        }
    };
    // The analysis compiles expressions, which needs a large stack.
    let file = file.to_string();
    let source = source.to_string();
    super::expr::on_big_stack(move || analyze(&file, wire, &source))
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 64
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.len() <= 64
}

/// The analysis: wire → domain, collecting every error.
fn analyze(file: &str, w: RunbookWire, source: &str) -> Result<Runbook, Vec<Diagnostic>> {
    let mut d = Diags::new(file);
    if !is_name(&w.name.value) {
        d.push(
            Pos::at(&w.name),
            format!("bad runbook name `{}`", w.name.value),
            Some("use lowercase letters, digits and dashes (e.g. high-cpu), at most 64"),
        );
    }
    if w.title.value.trim().is_empty() {
        d.error(Pos::at(&w.title), "the title is empty");
    }
    for s in &w.symptoms {
        if s.value.trim().is_empty() {
            d.error(Pos::at(s), "an empty symptom");
        }
    }

    // Inputs.
    let mut inputs = Vec::new();
    let mut input_types = BTreeMap::new();
    if w.inputs.len() > MAX_INPUTS {
        d.error(
            Pos::new(1, 1),
            format!("{} inputs; the limit is {MAX_INPUTS}", w.inputs.len()),
        );
    }
    for iw in &w.inputs {
        if let Some(input) = analyze_input(&iw.value, &mut d) {
            if input_types.contains_key(&input.name) {
                d.error(
                    Pos::at(&iw.value.name),
                    format!("duplicate input `{}`", input.name),
                );
                continue;
            }
            input_types.insert(input.name.clone(), input.cel_type());
            inputs.push(input);
        }
    }

    // Steps.
    let steps_pos = Pos::at(&w.steps);
    if w.steps.value.is_empty() {
        d.error(steps_pos, "the runbook has no steps");
    }
    if w.steps.value.len() > MAX_STEPS {
        d.error(
            steps_pos,
            format!("{} steps; the limit is {MAX_STEPS}", w.steps.value.len()),
        );
    }
    let mut later: BTreeMap<String, u32> = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Pos> = BTreeMap::new();
    for s in &w.steps.value {
        let id = &s.value.id;
        match first_seen.get(&id.value) {
            Some(first) => d.error(
                Pos::at(id),
                format!(
                    "duplicate step id `{}` (first used at line {})",
                    id.value, first.line
                ),
            ),
            None => {
                first_seen.insert(id.value.clone(), Pos::at(id));
                later.insert(id.value.clone(), Pos::at(id).line);
            }
        }
    }
    let mut earlier: BTreeMap<String, &'static [OutField]> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &w.steps.value {
        let sw = &s.value;
        let id = sw.id.value.clone();
        let first_time = seen.insert(id.clone());
        if !is_ident(&id) {
            d.push(
                Pos::at(&sw.id),
                format!("bad step id `{id}`"),
                Some("use lowercase letters, digits and _ (ids are CEL identifiers: steps.ID.output)"),
            );
        }
        if sw.title.value.trim().is_empty() {
            d.error(
                Pos::at(&sw.title),
                format!("step `{id}` has an empty title"),
            );
        }
        if first_time {
            later.remove(&id);
        }
        let scope = Scope {
            inputs: &input_types,
            earlier: &earlier,
            later: &later,
        };
        // The step itself counts as "later" for its own expressions.
        let mut with_self = later.clone();
        with_self.insert(id.clone(), Pos::at(&sw.id).line);
        let self_scope = Scope {
            inputs: &input_types,
            earlier: &earlier,
            later: &with_self,
        };
        let _ = scope;
        let when = sw.when.as_ref().and_then(|wh| {
            let pos = Pos::at(wh);
            match Expr::compile(&wh.value, pos) {
                Ok(e) => {
                    let problems = e.check_condition(&self_scope);
                    let ok = problems.is_empty();
                    for (m, h) in problems {
                        d.push(pos, format!("`when` of step `{id}`: {m}"), h);
                    }
                    ok.then_some(e)
                }
                Err(m) => {
                    d.push(
                        pos,
                        format!("`when` of step `{id}`: bad expression `{}`: {m}", wh.value),
                        Some("CEL, e.g. steps.pods.output.count > 0 && inputs.role == 'slave'"),
                    );
                    None
                }
            }
        });
        let action_name = sw.action.value.as_str();
        let action = match catalogue::spec(action_name) {
            None => {
                let msg = match PLANNED.iter().find(|(n, _)| *n == action_name) {
                    Some((_, why)) => format!("unknown action `{action_name}`: {why}"),
                    None => format!("unknown action `{action_name}`"),
                };
                d.push(
                    Pos::at(&sw.action),
                    msg,
                    Some(allowed_help(action_name, &catalogue::names())),
                );
                None
            }
            Some(spec) => {
                let (map, pos) = match &sw.with {
                    Some(wm) => (wm.value.clone(), Pos::at(wm)),
                    None => (BTreeMap::new(), Pos::at(&sw.action)),
                };
                let mut reader =
                    ArgReader::new(spec.name, spec.params, map, pos, &mut d, &self_scope);
                let action = Action::parse(spec.name, &mut reader);
                reader.finish();
                action
            }
        };
        if let Some(action) = action {
            if first_time {
                earlier.insert(id.clone(), action.spec().outputs);
            }
            steps.push(Step {
                id,
                title: sw.title.value.clone(),
                description: sw.description.as_ref().map(|x| x.value.clone()),
                action,
                when,
                on_failure: sw.on_failure.as_ref().map(|o| o.value).unwrap_or_default(),
                pos: Pos::at(&sw.id),
            });
        } else if first_time {
            // Later references to a step whose action is bad should not pile up errors.
            earlier.insert(
                id,
                &[OutField {
                    name: "*",
                    ty: Ty::Any,
                    doc: "",
                }],
            );
        }
    }
    if !d.is_empty() {
        return Err(d.into_sorted());
    }
    Ok(Runbook {
        name: w.name.value,
        title: w.title.value,
        description: w.description.map(|x| x.value).unwrap_or_default(),
        symptoms: w.symptoms.into_iter().map(|s| s.value).collect(),
        inputs,
        steps,
        source: source.to_string(),
    })
}

fn analyze_input(w: &InputWire, d: &mut Diags) -> Option<Input> {
    let name = w.name.value.clone();
    let pos = Pos::at(&w.name);
    let mut ok = true;
    if !is_ident(&name) {
        d.push(
            pos,
            format!("bad input name `{name}`"),
            Some("use lowercase letters, digits and _ (inputs.NAME in expressions)"),
        );
        ok = false;
    }
    let ty = w.ty.value;
    let numeric = matches!(ty, InputType::Int | InputType::Duration);
    let bound = |b: &Option<Spanned<Json>>, what: &str, d: &mut Diags| -> Option<i64> {
        let b = b.as_ref()?;
        if !numeric {
            d.error(
                Pos::at(b),
                format!("input `{name}`: `{what}` applies to int and duration inputs only"),
            );
            return None;
        }
        let v = match (&b.value, ty) {
            (Json::Number(n), _) => n.as_i64(),
            (Json::String(s), InputType::Duration) => super::args::parse_secs(s)
                .ok()
                .and_then(|v| i64::try_from(v).ok()),
            _ => None,
        };
        if v.is_none() {
            d.error(
                Pos::at(b),
                format!(
                    "input `{name}`: `{what}` must be {}, got {}",
                    if ty == InputType::Int {
                        "an int"
                    } else {
                        "a duration"
                    },
                    super::expr::describe(&b.value)
                ),
            );
        }
        v
    };
    let min = bound(&w.min, "min", d);
    let max = bound(&w.max, "max", d);
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        d.error(pos, format!("input `{name}`: min {a} is above max {b}"));
        ok = false;
    }
    let mut values = Vec::new();
    match (&w.values, ty) {
        (Some(v), InputType::Enum) => {
            if v.value.is_empty() {
                d.error(Pos::at(v), format!("input `{name}`: `values` is empty"));
                ok = false;
            }
            let mut set = BTreeSet::new();
            for x in &v.value {
                if !set.insert(x) {
                    d.error(Pos::at(v), format!("input `{name}`: `{x}` is listed twice"));
                    ok = false;
                }
            }
            values = v.value.clone();
        }
        (None, InputType::Enum) => {
            d.push(
                Pos::at(&w.ty),
                format!("input `{name}` is an enum without `values`"),
                Some("values: [master, slave]"),
            );
            ok = false;
        }
        (Some(v), _) => {
            d.error(
                Pos::at(v),
                format!("input `{name}`: `values` applies to enum inputs only"),
            );
            ok = false;
        }
        (None, _) => {}
    }
    let (pattern, regex) = match (&w.pattern, ty) {
        (Some(p), InputType::String) => match regex::Regex::new(&p.value) {
            Ok(re) => (Some(p.value.clone()), Some(re)),
            Err(e) => {
                d.error(
                    Pos::at(p),
                    format!(
                        "input `{name}`: bad pattern: {}",
                        e.to_string().lines().last().unwrap_or("")
                    ),
                );
                ok = false;
                (None, None)
            }
        },
        (Some(p), _) => {
            d.error(
                Pos::at(p),
                format!("input `{name}`: `pattern` applies to string inputs only"),
            );
            ok = false;
            (None, None)
        }
        (None, _) => (None, None),
    };
    let mut input = Input {
        name: name.clone(),
        ty,
        description: w.description.clone().unwrap_or_default(),
        default: None,
        min,
        max,
        values,
        pattern,
        regex,
    };
    if let Some(def) = &w.default {
        match input.check(&def.value) {
            Ok(v) => input.default = Some(v),
            Err(m) => {
                d.error(Pos::at(def), format!("input `{name}`: bad default: {m}"));
                ok = false;
            }
        }
    }
    ok.then_some(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match load("t.yaml", text.as_bytes(), "test") {
            Ok(_) => Vec::new(),
            Err(ds) => ds.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_good_runbook_loads() {
        let rb = load(
            "t.yaml",
            b"name: t\ntitle: T\ninputs:\n  - {name: n, type: int, default: 4, min: 1}\nsteps:\n  - id: a\n    title: A\n    action: pods.list\n    with: {role: slave}\n  - id: b\n    title: B\n    action: deployment.scale\n    with: {replicas: '${{ inputs.n }}'}\n    when: steps.a.output.count < inputs.n\n",
            "test",
        )
        .unwrap();
        assert_eq!(rb.steps.len(), 2);
        assert_eq!(rb.mutating_steps(), 1);
        assert_eq!(rb.inputs[0].default, Some(Json::from(4)));
    }

    #[test]
    fn errors_have_positions_and_help() {
        let e = errs("name: t\ntitle: T\nsteps:\n  - id: a\n    title: A\n    action: pods.lst\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.yaml:6:13: unknown action `pods.lst`"),
            "{e:?}"
        );
        assert!(e[0].contains("did you mean `pods.list`?"), "{e:?}");
        let e = errs(
            "name: t\ntitle: T\nsteps:\n  - id: a\n    title: A\n    action: pods.list\n    with: {rol: slave}\n",
        );
        assert!(
            e[0].contains("unknown argument `rol`") && e[0].contains("allowed: role"),
            "{e:?}"
        );
        let e = errs(
            "name: t\ntitle: T\nsteps:\n  - id: a\n    title: A\n    action: deployment.scale\n    with: {replicas: three}\n",
        );
        assert!(e[0].contains("expected int, got string \"three\""), "{e:?}");
        let e = errs("");
        assert!(e[0].contains("empty"), "{e:?}");
        let e = errs(
            "name: t\ntitle: T\nsteps:\n  - id: a\n    title: A\n    action: pods.list\n  - id: a\n    title: B\n    action: pods.list\n",
        );
        assert!(
            e[0].contains("duplicate step id `a` (first used at line 4)"),
            "{e:?}"
        );
    }
}
