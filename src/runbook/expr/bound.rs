//! What an expression may do, decided when the runbook is loaded, before anything runs: which
//! functions it calls (CEL's standard ones only — `exec('id')` is an error), whether a condition
//! can give true or false at all, and what evaluating it may cost.
//!
//! The cost is an estimate in evaluation steps over the syntax tree, after the macros (`all`,
//! `exists`, `exists_one`, `map`, `filter`) were expanded into comprehensions: every node costs
//! one step, a comprehension costs its body once per element of its list, and operations that
//! walk a value (comparing, `in`, concatenating, `matches`) cost its size. Sizes come from
//! literals where there are some; a list, map or string from a step's output or an input is
//! assumed to hold [`UNKNOWN_LEN`] elements. So seven `all()` nested over a list of 30 elements
//! (30⁷ ≈ 2·10¹⁰ steps) is refused, while one `exists()` over a step's pods costs a few hundred.
//! The estimate is not a proof: the evaluation itself is bounded again when it runs (see
//! [`super::guard`]).

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr, LiteralValue, operators};

use super::{Scope, Ty};
use crate::runbook::diag::allowed_help;

/// The most evaluation steps an expression may be estimated to take.
pub const MAX_COST: u64 = 1_000_000;
/// The elements assumed in a list, map or string whose size cannot be known before running (a
/// step's output, an input).
pub const UNKNOWN_LEN: u64 = 100;
/// The deepest nesting of macros (`all`, `exists`, `map`, ...) accepted.
pub const MAX_MACRO_NESTING: usize = 4;

/// The functions an expression may call (CEL's standard library, as the `cel` crate provides it
/// without its optional features), besides the operators and the macros.
pub const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "bytes",
    "type",
    "dyn",
];

/// The macros: expanded by the parser into comprehensions (or a presence test), so a call that
/// still has one of these names was written with the wrong arguments.
pub const MACROS: &[&str] = &["all", "exists", "exists_one", "map", "filter", "has"];

/// The operators, as the parser names them.
const OPERATORS: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::IN,
    operators::NOT_STRICTLY_FALSE,
];

/// A problem found: the message and, maybe, a help line.
pub type Problem = (String, Option<String>);

/// Every call of a function that is not an operator, a macro or one of [`FUNCTIONS`].
pub fn unknown_functions(e: &IdedExpr, out: &mut Vec<Problem>) {
    for_each_call(e, &mut |name, member| {
        if OPERATORS.contains(&name) || FUNCTIONS.contains(&name) {
            return;
        }
        if name == operators::OPT_INDEX || name == operators::OPT_SELECT {
            let msg = "optional values (`a.?b`, `a[?b]`) are not supported".to_string();
            if !out.iter().any(|(m, _)| *m == msg) {
                out.push((msg, Some("test with has(a.b) or `'b' in a` first".into())));
            }
            return;
        }
        let msg = if MACROS.contains(&name) {
            format!("`{name}` is a macro and takes a variable and an expression")
        } else if member {
            format!("unknown function `.{name}()`")
        } else {
            format!("unknown function `{name}()`")
        };
        if out.iter().any(|(m, _)| *m == msg) {
            return;
        }
        let help = if MACROS.contains(&name) {
            format!("e.g. steps.pods.output.pods.{name}(p, p.restarts > 0)")
        } else {
            let mut names: Vec<&str> = FUNCTIONS.to_vec();
            names.extend(MACROS.iter().filter(|m| **m != "has"));
            names.push("has");
            allowed_help(name, &names)
        };
        out.push((msg, Some(help)));
    });
}

fn for_each_call(e: &IdedExpr, f: &mut dyn FnMut(&str, bool)) {
    if let Node::Call(c) = &e.expr {
        f(&c.func_name, c.target.is_some());
    }
    for c in super::children(e) {
        for_each_call(c, f);
    }
}

/// The static type of an expression as far as it can be told without running it; [`Ty::Any`]
/// when it depends on values (an index, a field of a map, null outputs aside).
pub fn infer(e: &IdedExpr, scope: &Scope<'_>) -> Ty {
    infer_in(e, scope, &mut Vec::new())
}

fn infer_in(e: &IdedExpr, scope: &Scope<'_>, locals: &mut Vec<(String, Ty)>) -> Ty {
    match &e.expr {
        Node::Literal(v) => match v {
            LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
            LiteralValue::Double(_) => Ty::Double,
            LiteralValue::Boolean(_) => Ty::Bool,
            LiteralValue::String(_) => Ty::String,
            LiteralValue::Bytes(_) | LiteralValue::Null => Ty::Any,
        },
        Node::Ident(name) => match locals.iter().rev().find(|(n, _)| n == name) {
            Some((_, t)) => *t,
            None => Ty::Map,
        },
        Node::Select(s) if s.test => Ty::Bool,
        Node::Select(_) => match super::path(e) {
            Some(p) if !locals.iter().any(|(n, _)| Some(n) == p.first()) => path_type(&p, scope),
            _ => Ty::Any,
        },
        Node::List(_) => Ty::List,
        Node::Map(_) => Ty::Map,
        Node::Struct(_) | Node::Unspecified => Ty::Any,
        Node::Comprehension(c) => {
            let accu = infer_in(&c.accu_init, scope, locals);
            locals.push((c.iter_var.clone(), Ty::Any));
            if let Some(v) = &c.iter_var2 {
                locals.push((v.clone(), Ty::Any));
            }
            locals.push((c.accu_var.clone(), accu));
            let t = infer_in(&c.result, scope, locals);
            locals.truncate(locals.len() - 2 - usize::from(c.iter_var2.is_some()));
            t
        }
        Node::Call(c) => {
            let name = c.func_name.as_str();
            match name {
                operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS
                | operators::LOGICAL_NOT
                | operators::LOGICAL_AND
                | operators::LOGICAL_OR
                | operators::IN
                | operators::NOT_STRICTLY_FALSE
                | "contains"
                | "startsWith"
                | "endsWith"
                | "matches"
                | "bool" => Ty::Bool,
                "size" | "int" | "uint" => Ty::Int,
                "double" => Ty::Double,
                "string" => Ty::String,
                operators::CONDITIONAL => match c.args.as_slice() {
                    [_, a, b] => {
                        let (a, b) = (infer_in(a, scope, locals), infer_in(b, scope, locals));
                        if a == b { a } else { Ty::Any }
                    }
                    _ => Ty::Any,
                },
                operators::ADD
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO
                | operators::NEGATE => {
                    let tys: Vec<Ty> = c.args.iter().map(|a| infer_in(a, scope, locals)).collect();
                    match tys.iter().find(|t| **t != Ty::Any) {
                        Some(t) if matches!(t, Ty::Int | Ty::Double | Ty::String | Ty::List) => *t,
                        _ => Ty::Any,
                    }
                }
                _ => Ty::Any,
            }
        }
    }
}

/// The type of `inputs.x`, `steps.a.status`, `steps.a.output.f`.
fn path_type(p: &[String], scope: &Scope<'_>) -> Ty {
    match p {
        [root, name] if root == "inputs" => scope.inputs.get(name).copied().unwrap_or(Ty::Any),
        [root, _, field] if root == "steps" && (field == "status" || field == "summary") => {
            Ty::String
        }
        [root] if root == "inputs" || root == "steps" => Ty::Map,
        [root, _] if root == "steps" => Ty::Map,
        [root, id, out, name] if root == "steps" && out == "output" => scope
            .earlier
            .get(id)
            .and_then(|fields| fields.iter().find(|f| f.name == name))
            .map_or(Ty::Any, |f| f.ty),
        _ => Ty::Any,
    }
}

/// What the estimate knows of a value: how many elements (or characters) it has at most, its
/// whole size (what walking it costs), and what its elements are like.
#[derive(Debug, Clone)]
struct Est {
    len: u64,
    size: u64,
    elem: Option<Box<Est>>,
}

impl Est {
    fn scalar() -> Est {
        Est {
            len: 1,
            size: 1,
            elem: None,
        }
    }

    /// A value whose size cannot be known before running: it may be iterated as a list of
    /// [`UNKNOWN_LEN`] elements (each unknown too), but comparing it counts as one step (what it
    /// really costs is bounded when it runs).
    fn unknown() -> Est {
        Est {
            len: UNKNOWN_LEN,
            size: 1,
            elem: None,
        }
    }

    /// A string: comparing, concatenating or matching it counts as one step.
    fn string(chars: u64) -> Est {
        Est {
            len: chars,
            size: 1,
            elem: None,
        }
    }

    /// What an element (or a map's key or value) is like.
    fn elem(&self) -> Est {
        self.elem.as_deref().cloned().unwrap_or_else(Est::unknown)
    }

    fn join(a: &Est, b: &Est) -> Est {
        Est {
            len: a.len.max(b.len),
            size: a.size.max(b.size),
            elem: match (&a.elem, &b.elem) {
                (Some(x), Some(y)) => Some(Box::new(Est::join(x, y))),
                (Some(x), None) | (None, Some(x)) => Some(x.clone()),
                (None, None) => None,
            },
        }
    }

    fn of_type(t: Ty) -> Est {
        match t {
            Ty::Int | Ty::Double | Ty::Bool => Est::scalar(),
            Ty::String | Ty::List | Ty::Map | Ty::Any => Est::unknown(),
        }
    }
}

/// The estimated evaluation steps of an expression, and how deep its macros nest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub steps: u64,
    pub nesting: usize,
}

/// Estimates what evaluating `e` costs.
pub fn cost(e: &IdedExpr, scope: &Scope<'_>) -> Cost {
    let mut w = Walker {
        scope,
        locals: Vec::new(),
        accus: Vec::new(),
        depth: 0,
        nesting: 0,
    };
    let (steps, _) = w.walk(e);
    Cost {
        steps,
        nesting: w.nesting,
    }
}

/// The problems of cost and nesting, if any.
pub fn check_cost(e: &IdedExpr, scope: &Scope<'_>, out: &mut Vec<Problem>) {
    let c = cost(e, scope);
    if c.nesting > MAX_MACRO_NESTING {
        out.push((
            format!(
                "macros (all, exists, map, ...) are nested {} deep (about {} evaluation steps); the limit is {MAX_MACRO_NESTING}",
                c.nesting,
                approx(c.steps)
            ),
            Some("split the condition over several steps, or test fewer combinations".into()),
        ));
    } else if c.steps > MAX_COST {
        out.push((
            format!(
                "evaluating it may take about {} steps; the limit is {} steps",
                approx(c.steps),
                approx(MAX_COST)
            ),
            Some(format!(
                "each nested macro multiplies the work by the size of its list (lists from step outputs count as {UNKNOWN_LEN}); nest fewer, or test smaller lists"
            )),
        ));
    }
}

/// 21870000000 → `2.2·10^10`, 1000000 → `10^6`.
fn approx(n: u64) -> String {
    if n < 10_000 {
        return n.to_string();
    }
    let exp = n.ilog10();
    let mantissa = n as f64 / 10f64.powi(i32::try_from(exp).unwrap_or(0));
    if (mantissa - 1.0).abs() < 0.05 {
        format!("10^{exp}")
    } else {
        format!("{mantissa:.1}·10^{exp}")
    }
}

struct Walker<'s, 'a> {
    scope: &'s Scope<'a>,
    locals: Vec<(String, Est)>,
    /// The accumulators of the comprehensions being walked (appending to one is amortized).
    accus: Vec<String>,
    depth: usize,
    nesting: usize,
}

impl Walker<'_, '_> {
    fn local(&self, name: &str) -> Option<&Est> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }

    /// (steps, estimate of the value).
    fn walk(&mut self, e: &IdedExpr) -> (u64, Est) {
        match &e.expr {
            Node::Literal(v) => (
                1,
                match v {
                    LiteralValue::String(s) => Est::string(s.inner().chars().count() as u64),
                    LiteralValue::Bytes(b) => Est::string(b.inner().len() as u64),
                    _ => Est::scalar(),
                },
            ),
            Node::Ident(name) => match self.local(name) {
                Some(est) => (1, est.clone()),
                None => (1, Est::unknown()),
            },
            Node::Select(s) => {
                if let Some(p) = super::path(e)
                    && p.first().is_none_or(|r| self.local(r).is_none())
                {
                    return (p.len() as u64, Est::of_type(path_type(&p, self.scope)));
                }
                let (c, operand) = self.walk(&s.operand);
                let est = if s.test {
                    Est::scalar()
                } else {
                    operand.elem()
                };
                (c.saturating_add(1), est)
            }
            Node::List(l) => self.collection(l.elements.iter(), l.elements.len()),
            Node::Map(m) => self.collection(
                m.entries.iter().flat_map(|en| match &en.expr {
                    EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                    EntryExpr::StructField(sf) => vec![&sf.value],
                }),
                m.entries.len(),
            ),
            Node::Struct(_) | Node::Unspecified => (1, Est::unknown()),
            Node::Comprehension(c) => {
                self.depth += 1;
                self.nesting = self.nesting.max(self.depth);
                let (c_range, range) = self.walk(&c.iter_range);
                let (c_init, init) = self.walk(&c.accu_init);
                let n = range.len;
                let before = self.locals.len();
                self.locals.push((c.iter_var.clone(), range.elem()));
                if let Some(v) = &c.iter_var2 {
                    self.locals.push((v.clone(), range.elem()));
                }
                self.accus.push(c.accu_var.clone());
                // What the accumulator becomes: what one step adds, n times.
                self.locals.push((c.accu_var.clone(), init.clone()));
                let (_, once) = self.walk(&c.loop_step);
                let grown = Est {
                    len: init
                        .len
                        .saturating_add(n.saturating_mul(once.len.saturating_sub(init.len))),
                    size: init
                        .size
                        .saturating_add(n.saturating_mul(once.size.saturating_sub(init.size))),
                    elem: once.elem.clone().or(init.elem.clone()),
                };
                if let Some(last) = self.locals.last_mut() {
                    last.1 = grown;
                }
                let (c_cond, _) = self.walk(&c.loop_cond);
                let (c_step, _) = self.walk(&c.loop_step);
                let (c_result, result) = self.walk(&c.result);
                self.locals.truncate(before);
                self.accus.pop();
                self.depth -= 1;
                let steps = c_range
                    .saturating_add(c_init)
                    .saturating_add(n.saturating_mul(c_cond.saturating_add(c_step)))
                    .saturating_add(c_result);
                (steps, result)
            }
            Node::Call(call) => self.call(call),
        }
    }

    /// A list or map literal of `len` elements (or entries) made of `parts`: its elements are
    /// like the largest part (a map's keys and values alike).
    fn collection<'e>(
        &mut self,
        parts: impl Iterator<Item = &'e IdedExpr>,
        len: usize,
    ) -> (u64, Est) {
        let mut steps = 1u64;
        let mut size = 0u64;
        let mut elem: Option<Est> = None;
        for x in parts {
            let (c, est) = self.walk(x);
            steps = steps.saturating_add(c);
            size = size.saturating_add(est.size);
            elem = Some(match elem {
                Some(prev) => Est::join(&prev, &est),
                None => est,
            });
        }
        (
            steps,
            Est {
                len: len as u64,
                size: size.max(1),
                elem: elem.map(Box::new),
            },
        )
    }

    fn call(&mut self, call: &cel::common::ast::CallExpr) -> (u64, Est) {
        let name = call.func_name.as_str();
        if name == operators::CONDITIONAL
            && let [cond, a, b] = call.args.as_slice()
        {
            let (c0, _) = self.walk(cond);
            let (c1, e1) = self.walk(a);
            let (c2, e2) = self.walk(b);
            return (
                1u64.saturating_add(c0).saturating_add(c1.max(c2)),
                Est::join(&e1, &e2),
            );
        }
        let appends = name == operators::ADD
            && call.target.is_none()
            && matches!(call.args.first().map(|a| &a.expr), Some(Node::Ident(n)) if self.accus.contains(n));
        let mut steps = 1u64;
        let mut ests = Vec::new();
        for x in call.target.iter().map(|t| &**t).chain(call.args.iter()) {
            let (c, est) = self.walk(x);
            steps = steps.saturating_add(c);
            ests.push(est);
        }
        let sizes = |ests: &[Est]| ests.iter().fold(0u64, |a, e| a.saturating_add(e.size));
        let (extra, est) = match name {
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => (
                ests.iter().map(|e| e.size).min().unwrap_or(1),
                Est::scalar(),
            ),
            operators::IN => (ests.last().map_or(1, |e| e.size), Est::scalar()),
            operators::ADD => {
                let joined = match ests.as_slice() {
                    [a, b] => Est {
                        len: a.len.saturating_add(b.len),
                        size: a.size.saturating_add(b.size),
                        elem: match (&a.elem, &b.elem) {
                            (Some(x), Some(y)) => Some(Box::new(Est::join(x, y))),
                            (x, y) => x.clone().or(y.clone()),
                        },
                    },
                    _ => Est::scalar(),
                };
                let extra = if appends {
                    ests.last().map_or(1, |e| e.size)
                } else {
                    sizes(&ests)
                };
                (extra, joined)
            }
            operators::INDEX => (1, ests.first().map_or_else(Est::unknown, Est::elem)),
            operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE
            | operators::LOGICAL_NOT
            | operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::NOT_STRICTLY_FALSE
            | "size"
            | "type" => (0, Est::scalar()),
            "contains" | "startsWith" | "endsWith" | "matches" | "int" | "uint" | "double"
            | "bool" => (sizes(&ests), Est::scalar()),
            "string" | "bytes" => (sizes(&ests), Est::string(UNKNOWN_LEN)),
            "dyn" => (0, ests.first().cloned().unwrap_or_else(Est::unknown)),
            _ => (sizes(&ests), Est::unknown()),
        };
        (steps.saturating_add(extra), est)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runbook::expr::OutField;

    const PODS: &[OutField] = &[
        OutField {
            name: "count",
            ty: Ty::Int,
            doc: "",
        },
        OutField {
            name: "pods",
            ty: Ty::List,
            doc: "",
        },
    ];

    fn with_scope<T>(f: impl FnOnce(&Scope<'_>) -> T) -> T {
        let inputs = BTreeMap::from([("n".to_string(), Ty::Int), ("who".to_string(), Ty::String)]);
        let earlier = BTreeMap::from([("a".to_string(), PODS)]);
        let later = BTreeMap::new();
        f(&Scope {
            inputs: &inputs,
            earlier: &earlier,
            later: &later,
        })
    }

    fn parsed(src: &str) -> cel::Program {
        super::super::on_big_stack(|| cel::Program::compile(src)).unwrap()
    }

    #[test]
    fn the_hostile_expression_costs_too_much() {
        let src = super::super::hostile();
        assert!(
            src.chars().count() < super::super::MAX_CHARS,
            "{}",
            src.len()
        );
        let p = parsed(&src);
        let c = with_scope(|s| cost(p.expression(), s));
        assert_eq!(c.nesting, 7);
        assert!(c.steps > 30u64.pow(7), "{c:?}");
        let mut out = Vec::new();
        with_scope(|s| check_cost(p.expression(), s, &mut out));
        assert!(out[0].0.contains("nested 7 deep"), "{out:?}");
    }

    #[test]
    fn ordinary_expressions_are_cheap() {
        for src in [
            "steps.a.output.pods.exists(p, p.restarts > 0)",
            "steps.a.output.count > inputs.n && inputs.who != ''",
            "steps.a.output.pods.map(p, p.name).exists(n, n.startsWith('new-api'))",
            "steps.a.output.pods.exists(p, steps.a.output.pods.exists(q, p.node == q.node))",
            "size(steps.a.output.pods.filter(p, p.ready)) == steps.a.output.count",
        ] {
            let p = parsed(src);
            let c = with_scope(|s| cost(p.expression(), s));
            assert!(c.steps <= MAX_COST / 2, "{src}: {c:?}");
        }
    }

    #[test]
    fn exponential_values_are_seen_through() {
        // Each level squares a value that sharing keeps cheap to build: comparing it is not.
        let l =
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]";
        let src =
            format!("[{l}.map(x, {l})].all(m, [m.map(x, m)].all(n, [n.map(x, n)].all(o, o == o)))");
        let p = parsed(&src);
        let c = with_scope(|s| cost(p.expression(), s));
        assert!(c.steps > MAX_COST, "{c:?}");
        // Three nested levels over 30 elements pass.
        let src = format!("{l}.all(a, {l}.all(b, {l}.all(c, a + b + c > 0)))");
        let p = parsed(&src);
        let c = with_scope(|s| cost(p.expression(), s));
        assert!(c.steps <= MAX_COST, "{c:?}");
    }

    #[test]
    fn unknown_functions_are_named() {
        let msgs = |src: &str| {
            let p = parsed(src);
            let mut out = Vec::new();
            unknown_functions(p.expression(), &mut out);
            out
        };
        assert_eq!(msgs("exec('id')")[0].0, "unknown function `exec()`");
        assert!(msgs("'a'.sise()")[0].1.as_deref().unwrap().contains("size"));
        assert!(msgs("size('a') > 0 && 'abc'.matches('b') && int('1') == 1").is_empty());
        assert!(
            msgs("[1].all(x)")[0].0.contains("macro"),
            "{:?}",
            msgs("[1].all(x)")
        );
        assert!(
            msgs("timestamp('2020-01-01T00:00:00Z') != null")[0]
                .0
                .contains("timestamp")
        );
    }

    #[test]
    fn every_allowed_function_exists_in_cel() {
        // An undeclared function fails with "Undeclared reference"; a declared one with a bad
        // argument fails otherwise (or succeeds).
        for f in FUNCTIONS {
            let declared = [format!("{f}(1)"), format!("'a'.{f}('a')")]
                .iter()
                .any(|src| match parsed(src).execute(&cel::Context::default()) {
                    Ok(_) => true,
                    Err(e) => !e.to_string().contains("Undeclared reference"),
                });
            assert!(declared, "{f} is not a function of cel");
        }
    }

    #[test]
    fn condition_types() {
        for (src, want) in [
            ("steps.a.output.count", Ty::Int),
            ("steps.a.output.count > 1", Ty::Bool),
            ("inputs.who", Ty::String),
            ("inputs.n + 1", Ty::Int),
            ("'a' + inputs.who", Ty::String),
            ("[1].all(x, x > 0)", Ty::Bool),
            ("[1].exists_one(x, x > 0)", Ty::Bool),
            ("[1].map(x, x)", Ty::List),
            ("has(steps.a.output.count)", Ty::Bool),
            ("steps.a.output.pods[0]", Ty::Any),
            ("inputs.n > 1 ? true : false", Ty::Bool),
            ("steps.a.status", Ty::String),
            ("steps.a.error", Ty::Any),
        ] {
            let ty = with_scope(|s| infer(parsed(src).expression(), s));
            assert_eq!(ty, want, "{src}");
        }
    }

    #[test]
    fn approximations_read_well() {
        assert_eq!(approx(1_000_000), "10^6");
        assert_eq!(approx(21_870_000_000), "2.2·10^10");
        assert_eq!(approx(512), "512");
    }
}
