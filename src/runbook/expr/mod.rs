//! Expressions: CEL (the Common Expression Language Kubernetes uses in ValidatingAdmissionPolicy
//! and CRD validation rules), through the `cel` crate (the maintained successor of
//! `cel-interpreter`; its 0.10 parser panicked on an unfinished expression such as `1 +`).
//!
//! An expression sees two variables: `inputs` (the run's inputs by name: int, string, bool, enum
//! as string, duration as int seconds) and `steps` (by step id: `status` — ok, failed, skipped,
//! dry-run, declined —, `output`, the action's output or null, `error` and `summary`). Every
//! reference is checked when the runbook is loaded: an unknown input, a step that does not exist or
//! comes later, an output field the action does not have.
//!
//! The parser is a generated ANTLR parser that recurses deeply: expressions are limited in length
//! and nesting, and are compiled on a thread with a large stack, so that no input can overflow it.
//!
//! What an expression may do is bounded twice: when the runbook is loaded ([`bound`]: only CEL's
//! standard functions, a condition that can be true or false, an estimate of the work within
//! [`bound::MAX_COST`]), and when it runs ([`guard`]: an iteration budget, a deadline, a second
//! Ctrl-C, on a thread of its own).

pub mod bound;
pub mod guard;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr};
use serde_json::Value as Json;

use super::diag::{Pos, allowed_help, closest};
pub use guard::{Cancel, EvalError};

/// The longest expression accepted, in characters.
pub const MAX_CHARS: usize = 1000;
/// The deepest nesting of brackets accepted.
pub const MAX_NESTING: usize = 24;
/// The deepest syntax tree accepted (after parsing).
pub const MAX_DEPTH: usize = 200;
/// The stack of the thread that compiles (the parser needs far more than 2 MiB in debug builds).
pub const COMPILE_STACK: usize = 256 * 1024 * 1024;

/// What a value is, as far as loading can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ty {
    Int,
    Double,
    Bool,
    String,
    List,
    Map,
    /// Anything (null included).
    Any,
}

impl Ty {
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Double => "double",
            Ty::Bool => "bool",
            Ty::String => "string",
            Ty::List => "list",
            Ty::Map => "map",
            Ty::Any => "any",
        }
    }
}

/// A field of an action's output, declared in the catalogue.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct OutField {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

/// The fields of `steps.ID` besides the output.
pub const STEP_FIELDS: [&str; 4] = ["status", "output", "error", "summary"];

/// A compiled expression and where it was written.
#[derive(Clone)]
pub struct Expr {
    pub source: String,
    pub pos: Pos,
    program: Arc<cel::Program>,
    /// The tree that runs: the program's, instrumented by [`guard::instrument`].
    guarded: Arc<IdedExpr>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Cheap checks before the parser sees the text.
fn precheck(source: &str) -> Result<(), String> {
    let chars = source.chars().count();
    if source.trim().is_empty() {
        return Err("the expression is empty".into());
    }
    if chars > MAX_CHARS {
        return Err(format!(
            "the expression is {chars} characters long; the limit is {MAX_CHARS}"
        ));
    }
    if let Some(c) = source
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(format!(
            "the expression contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    // Bracket nesting, outside string literals.
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_NESTING {
        return Err(format!(
            "brackets are nested {max} deep; the limit is {MAX_NESTING}"
        ));
    }
    // The ternary operator and unary operators nest too.
    let ternaries = source.matches('?').count();
    if ternaries > MAX_NESTING {
        return Err(format!(
            "{ternaries} conditional operators; the limit is {MAX_NESTING}"
        ));
    }
    Ok(())
}

/// The direct children of a node of the syntax tree.
pub fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    fn entries(entries: &[cel::common::ast::IdedEntryExpr]) -> Vec<&IdedExpr> {
        entries
            .iter()
            .flat_map(|en| match &en.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                EntryExpr::StructField(sf) => vec![&sf.value],
            })
            .collect()
    }
    match &e.expr {
        Node::Call(c) => c.target.iter().map(|t| &**t).chain(c.args.iter()).collect(),
        Node::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Node::List(l) => l.elements.iter().collect(),
        Node::Map(m) => entries(&m.entries),
        Node::Struct(s) => entries(&s.entries),
        Node::Select(s) => vec![&*s.operand],
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => Vec::new(),
    }
}

fn depth(e: &IdedExpr) -> usize {
    fn go(e: &IdedExpr, d: usize) -> usize {
        if d > MAX_DEPTH {
            return d;
        }
        children(e)
            .into_iter()
            .map(|c| go(c, d + 1))
            .max()
            .unwrap_or(d)
    }
    go(e, 1)
}

/// Runs `f` on a thread with a stack large enough for the parser and the evaluator.
pub fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        match std::thread::Builder::new()
            .name("newapi-ops-cel".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(s, f)
        {
            Ok(h) => match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => panic!("cannot start a thread: {e}"),
        }
    })
}

impl Expr {
    /// Compiles `source`; the error says what is wrong and where in the expression.
    pub fn compile(source: &str, pos: Pos) -> Result<Expr, String> {
        precheck(source)?;
        let owned = source.to_string();
        let compiled = on_big_stack(move || {
            let parsed = std::panic::catch_unwind(|| cel::Program::compile(&owned));
            match parsed {
                Ok(Ok(p)) => {
                    let d = depth(p.expression());
                    if d > MAX_DEPTH {
                        // Dropped here, on the big stack.
                        drop(p);
                        Err(format!(
                            "the expression is nested {d} levels deep; the limit is {MAX_DEPTH}"
                        ))
                    } else {
                        let guarded = guard::instrument(p.expression());
                        Ok((p, guarded))
                    }
                }
                Ok(Err(errors)) => Err(errors
                    .errors
                    .iter()
                    .map(|e| {
                        let msg = e.msg.trim_start_matches("Syntax error: ");
                        if e.pos.1 > 0 {
                            format!("at column {}: {msg}", e.pos.1)
                        } else {
                            msg.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")),
                Err(_) => Err("the expression could not be parsed".into()),
            }
        })?;
        let (program, guarded) = compiled;
        Ok(Expr {
            source: source.to_string(),
            pos,
            program: Arc::new(program),
            guarded: Arc::new(guarded),
        })
    }

    /// Checks every variable reference against what exists at this point of the runbook, every
    /// function called, and what evaluating it may cost.
    pub fn check(&self, scope: &Scope<'_>) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let mut locals = Vec::new();
        walk(self.program.expression(), &mut locals, scope, &mut out);
        bound::unknown_functions(self.program.expression(), &mut out);
        if out.is_empty() {
            bound::check_cost(self.program.expression(), scope, &mut out);
        }
        out
    }

    /// [`Expr::check`], for an expression that must give true or false (`when`, `fail_if`):
    /// also refuses one whose type is known and is not bool.
    pub fn check_condition(&self, scope: &Scope<'_>) -> Vec<(String, Option<String>)> {
        let mut out = self.check(scope);
        if out.is_empty() {
            out.extend(self.check_bool(scope));
        }
        out
    }

    /// The problem of a condition whose type is known and is not bool.
    pub fn check_bool(&self, scope: &Scope<'_>) -> Option<(String, Option<String>)> {
        let ty = bound::infer(self.program.expression(), scope);
        if matches!(ty, Ty::Bool | Ty::Any) {
            return None;
        }
        Some((
            format!(
                "`{}` gives {} {}, not true or false",
                self.source,
                if ty == Ty::Int { "an" } else { "a" },
                ty.as_str()
            ),
            Some(match ty {
                Ty::Int | Ty::Double => format!("compare it: {} > 0", self.source),
                Ty::String => format!("compare it: {} == 'ok'", self.source),
                _ => format!("test it: size({}) > 0", self.source),
            }),
        ))
    }

    /// The static type of a plain reference (`inputs.x`, `steps.a.output.count`) or literal;
    /// [`Ty::Any`] when it cannot be told without running.
    pub fn static_type(&self, scope: &Scope<'_>) -> Ty {
        let e = self.program.expression();
        match &e.expr {
            Node::Literal(v) => {
                use cel::common::ast::LiteralValue as L;
                match v {
                    L::Int(_) | L::UInt(_) => Ty::Int,
                    L::Double(_) => Ty::Double,
                    L::Boolean(_) => Ty::Bool,
                    L::String(_) => Ty::String,
                    _ => Ty::Any,
                }
            }
            _ => match path(e).as_deref() {
                Some([root, name]) if root == "inputs" => {
                    scope.inputs.get(name.as_str()).copied().unwrap_or(Ty::Any)
                }
                Some([root, id, field]) if root == "steps" && field != "output" => {
                    let _ = id;
                    Ty::String
                }
                Some([root, id, out, name]) if root == "steps" && out == "output" => scope
                    .earlier
                    .get(id.as_str())
                    .and_then(|fields| fields.iter().find(|f| f.name == name))
                    .map_or(Ty::Any, |f| f.ty),
                _ => Ty::Any,
            },
        }
    }

    /// Evaluates to a JSON value, within the bounds of [`guard`].
    pub fn evaluate(&self, b: &Bindings) -> Result<Json, EvalError> {
        guard::evaluate(
            self.guarded.clone(),
            Json::Object(b.inputs.clone()),
            Json::Object(b.steps.clone()),
            b.cancel.as_ref(),
            guard::Limits::default(),
        )
    }

    /// Evaluates to a JSON value; the error names the expression.
    pub fn eval(&self, b: &Bindings) -> Result<Json, String> {
        self.evaluate(b)
            .map_err(|e| format!("`{}`: {e}", self.source))
    }

    /// Evaluates a condition: it must give a bool.
    pub fn eval_bool(&self, b: &Bindings) -> Result<bool, String> {
        match self.eval(b)? {
            Json::Bool(v) => Ok(v),
            other => Err(format!(
                "`{}` must give true or false, not {}",
                self.source,
                describe(&other)
            )),
        }
    }
}

/// What the runbook has declared before the expression: inputs and earlier steps.
pub struct Scope<'a> {
    pub inputs: &'a BTreeMap<String, Ty>,
    /// Steps before this one: id → their action's output fields.
    pub earlier: &'a BTreeMap<String, &'static [OutField]>,
    /// This step and the ones after it: id → line.
    pub later: &'a BTreeMap<String, u32>,
}

/// The variables an expression sees at run time (and how to stop one that runs).
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    pub inputs: serde_json::Map<String, Json>,
    pub steps: serde_json::Map<String, Json>,
    /// Set by the run's second Ctrl-C: an evaluation under way gives up.
    pub cancel: Option<Cancel>,
}

/// `a.b.c` as its names, when the expression is only that.
fn path(e: &IdedExpr) -> Option<Vec<String>> {
    match &e.expr {
        Node::Ident(name) => Some(vec![name.clone()]),
        Node::Select(s) => {
            let mut p = path(&s.operand)?;
            p.push(s.field.clone());
            Some(p)
        }
        _ => None,
    }
}

fn walk(
    e: &IdedExpr,
    locals: &mut Vec<String>,
    scope: &Scope<'_>,
    out: &mut Vec<(String, Option<String>)>,
) {
    match &e.expr {
        Node::Ident(_) | Node::Select(_) => {
            if let Some(p) = path(e) {
                check_path(&p, locals, scope, out);
            } else if let Node::Select(s) = &e.expr {
                walk(&s.operand, locals, scope, out);
            }
        }
        Node::Call(c) => {
            // `steps["a"]` and `inputs["x"]`: an index with a literal string is a reference too.
            if c.func_name == "_[_]"
                && let [base, key] = c.args.as_slice()
                && let (Some(mut p), Node::Literal(cel::common::ast::LiteralValue::String(k))) =
                    (path(base), &key.expr)
            {
                p.push(k.inner().to_string());
                check_path(&p, locals, scope, out);
                return;
            }
            if let Some(t) = &c.target {
                walk(t, locals, scope, out);
            }
            for a in &c.args {
                walk(a, locals, scope, out);
            }
        }
        Node::Comprehension(c) => {
            walk(&c.iter_range, locals, scope, out);
            walk(&c.accu_init, locals, scope, out);
            let before = locals.len();
            locals.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                locals.push(v.clone());
            }
            locals.push(c.accu_var.clone());
            walk(&c.loop_cond, locals, scope, out);
            walk(&c.loop_step, locals, scope, out);
            walk(&c.result, locals, scope, out);
            locals.truncate(before);
        }
        Node::List(l) => {
            for x in &l.elements {
                walk(x, locals, scope, out);
            }
        }
        Node::Map(m) => {
            for en in &m.entries {
                match &en.expr {
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, locals, scope, out);
                        walk(&me.value, locals, scope, out);
                    }
                    EntryExpr::StructField(sf) => walk(&sf.value, locals, scope, out),
                }
            }
        }
        Node::Struct(s) => {
            out.push((
                format!(
                    "message construction `{}{{...}}` is not supported",
                    s.type_name
                ),
                Some("use a map literal: {'key': value}".into()),
            ));
        }
        Node::Literal(_) | Node::Unspecified => {}
    }
}

fn check_path(
    p: &[String],
    locals: &[String],
    scope: &Scope<'_>,
    out: &mut Vec<(String, Option<String>)>,
) {
    let Some(root) = p.first() else { return };
    if locals.contains(root) {
        return;
    }
    match root.as_str() {
        "inputs" => {
            if let Some(name) = p.get(1)
                && !scope.inputs.contains_key(name)
            {
                let names: Vec<&str> = scope.inputs.keys().map(String::as_str).collect();
                out.push((
                    format!("unknown input `{name}`"),
                    Some(if names.is_empty() {
                        "this runbook declares no inputs".into()
                    } else {
                        allowed_help(name, &names)
                    }),
                ));
            }
        }
        "steps" => {
            let Some(id) = p.get(1) else { return };
            let Some(fields) = scope.earlier.get(id) else {
                let before: Vec<&str> = scope.earlier.keys().map(String::as_str).collect();
                let help = if before.is_empty() {
                    "no step comes before this one".to_string()
                } else {
                    format!("steps before this one: {}", before.join(", "))
                };
                match scope.later.get(id) {
                    Some(line) => out.push((
                        format!(
                            "step `{id}` (line {line}) does not come before this point: a step can only use the results of the steps before it"
                        ),
                        Some(help),
                    )),
                    None => {
                        let help = match closest(id, &before) {
                            Some(c) => format!("did you mean `{c}`? {help}"),
                            None => help,
                        };
                        out.push((format!("no step `{id}`"), Some(help)));
                    }
                }
                return;
            };
            let Some(field) = p.get(2) else { return };
            if !STEP_FIELDS.contains(&field.as_str()) {
                out.push((
                    format!("steps.{id} has no field `{field}`"),
                    Some(allowed_help(field, &STEP_FIELDS)),
                ));
                return;
            }
            if field == "output"
                && let Some(name) = p.get(3)
                && !fields.iter().any(|f| f.name == "*")
                && !fields.iter().any(|f| f.name == name)
            {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                out.push((
                    format!("the output of step `{id}` has no field `{name}`"),
                    Some(allowed_help(name, &names)),
                ));
            }
        }
        other => out.push((
            format!("unknown variable `{other}`"),
            Some("an expression sees `inputs.NAME` and `steps.ID.output.FIELD` (also steps.ID.status, .error, .summary)".into()),
        )),
    }
}

/// JSON to CEL: integers become `int` whenever they fit, so arithmetic mixes freely.
pub fn to_cel(v: &Json) -> cel::Value {
    use cel::objects::{Key, Map};
    match v {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Object(o) => {
            let map: std::collections::HashMap<Key, cel::Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// CEL to JSON (what arguments and the transcript hold).
pub fn from_cel(v: &cel::Value) -> Result<Json, String> {
    from_cel_bounded(v, usize::MAX).map_err(|e| e.to_string())
}

/// [`from_cel`] refusing a value of more than `max` values (lists and maps count their
/// elements, however they share them).
pub fn from_cel_bounded(v: &cel::Value, max: usize) -> Result<Json, EvalError> {
    let mut left = max;
    convert(v, &mut left, max)
}

fn convert(v: &cel::Value, left: &mut usize, max: usize) -> Result<Json, EvalError> {
    use cel::objects::Key;
    if *left == 0 {
        return Err(EvalError::TooLarge(max));
    }
    *left -= 1;
    Ok(match v {
        cel::Value::Null => Json::Null,
        cel::Value::Bool(b) => Json::Bool(*b),
        cel::Value::Int(i) => Json::from(*i),
        cel::Value::UInt(u) => Json::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| {
                EvalError::Failed(format!(
                    "the expression gave {f}, which is not a finite number"
                ))
            })?,
        cel::Value::String(s) => Json::String(s.to_string()),
        cel::Value::List(l) => Json::Array(
            l.iter()
                .map(|x| convert(x, left, max))
                .collect::<Result<_, _>>()?,
        ),
        cel::Value::Map(m) => {
            let mut o = BTreeMap::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                o.insert(key, convert(v, left, max)?);
            }
            Json::Object(o.into_iter().collect())
        }
        other => {
            return Err(EvalError::Failed(format!(
                "the expression gave a {}",
                other.type_of()
            )));
        }
    })
}

/// A value as an error message shows it: `string "abc"`, `int 5`, `a list`.
pub fn describe(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("bool {b}"),
        Json::Number(n) if n.is_f64() => format!("double {n}"),
        Json::Number(n) => format!("int {n}"),
        Json::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("string \"{short}\"")
        }
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}

/// Every variable name referenced (for tests and `show`).
pub fn roots(e: &Expr) -> BTreeSet<String> {
    e.program
        .references()
        .variables()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The hostile expression of issue 12: seven `all()` nested over a list of 30 elements, 636
/// characters (under [`MAX_CHARS`]), about 2·10^10 iterations.
#[cfg(test)]
pub(crate) fn hostile() -> String {
    let list = format!(
        "[{}]",
        (0..30).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let vars = ["a", "b", "c", "d", "e", "f", "g"];
    let mut s = String::new();
    for v in vars {
        s.push_str(&format!("{list}.all({v}, "));
    }
    s.push_str("g >= 0");
    s.push_str(&")".repeat(vars.len()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with<'a>(
        inputs: &'a BTreeMap<String, Ty>,
        earlier: &'a BTreeMap<String, &'static [OutField]>,
        later: &'a BTreeMap<String, u32>,
    ) -> Scope<'a> {
        Scope {
            inputs,
            earlier,
            later,
        }
    }

    const PODS: &[OutField] = &[OutField {
        name: "count",
        ty: Ty::Int,
        doc: "",
    }];

    #[test]
    fn references_are_checked() {
        let inputs = BTreeMap::from([("replicas".to_string(), Ty::Int)]);
        let earlier = BTreeMap::from([("pods".to_string(), PODS)]);
        let later = BTreeMap::from([("scale".to_string(), 12)]);
        let scope = scope_with(&inputs, &earlier, &later);
        let msgs = |src: &str| -> Vec<String> {
            Expr::compile(src, Pos::default())
                .unwrap()
                .check(&scope)
                .into_iter()
                .map(|(m, _)| m)
                .collect()
        };
        assert!(msgs("steps.pods.output.count < inputs.replicas").is_empty());
        assert!(msgs("[1, 2].exists(x, x > inputs.replicas)").is_empty());
        assert_eq!(msgs("inputs.replica > 1"), ["unknown input `replica`"]);
        assert!(msgs("steps.scale.status == 'ok'")[0].contains("does not come before"));
        assert_eq!(msgs("steps.nope.status == 'ok'"), ["no step `nope`"]);
        assert!(msgs("steps.pods.output.cnt > 1")[0].contains("has no field `cnt`"));
        assert!(msgs("steps.pods.stat == 'ok'")[0].contains("has no field `stat`"));
        assert_eq!(msgs("foo > 1"), ["unknown variable `foo`"]);
        assert!(msgs("steps['scale'].status == 'ok'")[0].contains("does not come before"));
    }

    #[test]
    fn bad_expressions_are_errors_not_panics() {
        for src in [
            "1 +",
            "foo(",
            "a.b[",
            "'unterminated",
            "x ? y",
            "",
            "\u{0}",
            &"(".repeat(100),
            &format!("{}1{}", "[".repeat(30), "]".repeat(30)),
            &"a.b".repeat(400),
            &"-".repeat(2000),
        ] {
            assert!(Expr::compile(src, Pos::default()).is_err(), "{src:?}");
        }
        let e = Expr::compile("1 +", Pos::default()).unwrap_err();
        assert!(e.contains("column"), "{e}");
    }

    #[test]
    fn evaluation() {
        let mut b = Bindings::default();
        b.inputs.insert("n".into(), Json::from(3));
        b.steps.insert(
            "pods".into(),
            serde_json::json!({"status": "ok", "output": {"count": 5, "pods": [{"restarts": 2}]}}),
        );
        let e = |s: &str| Expr::compile(s, Pos::default()).unwrap();
        assert!(
            e("steps.pods.output.count + 1 > inputs.n")
                .eval_bool(&b)
                .unwrap()
        );
        assert!(
            e("steps.pods.output.pods.exists(p, p.restarts > 0)")
                .eval_bool(&b)
                .unwrap()
        );
        assert_eq!(e("inputs.n * 2").eval(&b).unwrap(), Json::from(6));
        assert!(e("1 / 0").eval(&b).is_err());
        assert!(
            e("inputs.n")
                .eval_bool(&b)
                .unwrap_err()
                .contains("true or false")
        );
        assert!(e("9223372036854775807 + 1").eval(&b).is_err());
    }
}
