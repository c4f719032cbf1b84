//! Typed action arguments: what a step's `with:` may hold, read against the action's declared
//! parameters (unknown names and wrong types are errors with the allowed values), and resolved
//! at run time, when `${{ expression }}` references to inputs and earlier steps get their values.
//!
//! An argument is a literal of its type, `${{ expr }}` alone (the expression's value, converted
//! to the type), or — for strings — text with `${{ expr }}` inside (interpolated).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;
use serde_saphyr::Spanned;

use super::diag::{Diags, Pos, allowed_help};
use super::expr::{Bindings, Expr, Scope, Ty, describe};

/// What a parameter accepts, for messages, `show` and static checks.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", content = "values", rename_all = "kebab-case")]
pub enum ParamTy {
    Int,
    Bool,
    String,
    /// `30s`, `5m`, `1h`, or a number of seconds.
    Duration,
    Enum(&'static [&'static str]),
    /// A list whose items are among these.
    EnumList(&'static [&'static str]),
    StringList,
    /// A CEL expression, written without `${{ }}`, that the action evaluates.
    Cel,
}

impl ParamTy {
    pub fn describe(self) -> String {
        match self {
            ParamTy::Int => "int".into(),
            ParamTy::Bool => "bool".into(),
            ParamTy::String => "string".into(),
            ParamTy::Duration => "duration (30s, 5m, 1h)".into(),
            ParamTy::Enum(v) => format!("one of {}", v.join("|")),
            ParamTy::EnumList(v) => format!("list of {}", v.join("|")),
            ParamTy::StringList => "list of strings".into(),
            ParamTy::Cel => "CEL expression".into(),
        }
    }

    /// Whether a value of static type `ty` can be converted to this parameter.
    fn accepts(self, ty: Ty) -> bool {
        match (self, ty) {
            (_, Ty::Any) => true,
            (ParamTy::Int, t) => matches!(t, Ty::Int),
            (ParamTy::Bool, t) => matches!(t, Ty::Bool),
            (ParamTy::String | ParamTy::Enum(_), t) => matches!(t, Ty::String),
            (ParamTy::Duration, t) => matches!(t, Ty::Int | Ty::String),
            (ParamTy::EnumList(_) | ParamTy::StringList, t) => matches!(t, Ty::List),
            (ParamTy::Cel, _) => false,
        }
    }
}

/// One declared parameter of an action.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamTy,
    pub required: bool,
    /// The default, as JSON (None when required).
    pub default: Option<fn() -> Json>,
    pub doc: &'static str,
}

/// A value an argument can hold.
pub trait ArgType: Sized + Clone + std::fmt::Debug + Serialize + Send + Sync + 'static {
    const TY: ParamTy;
    fn from_json(v: &Json) -> Result<Self, String>;
    /// For [`ParamTy::Cel`] parameters: the compiled expression.
    fn from_expr(_e: Expr) -> Option<Self> {
        None
    }
}

impl ArgType for i64 {
    const TY: ParamTy = ParamTy::Int;
    fn from_json(v: &Json) -> Result<Self, String> {
        match v {
            Json::Number(n) if n.is_i64() => n.as_i64().ok_or_else(|| "out of range".into()),
            Json::Number(n) if n.is_u64() => Err(format!("{n} is out of range")),
            Json::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                _ => Err(format!("expected int, got {}", describe(v))),
            },
            _ => Err(format!("expected int, got {}", describe(v))),
        }
    }
}

impl ArgType for bool {
    const TY: ParamTy = ParamTy::Bool;
    fn from_json(v: &Json) -> Result<Self, String> {
        v.as_bool()
            .ok_or_else(|| format!("expected bool (true or false), got {}", describe(v)))
    }
}

impl ArgType for String {
    const TY: ParamTy = ParamTy::String;
    fn from_json(v: &Json) -> Result<Self, String> {
        match v {
            Json::String(s) => Ok(s.clone()),
            // A number or bool where text is wanted is written as it reads.
            Json::Number(n) => Ok(n.to_string()),
            Json::Bool(b) => Ok(b.to_string()),
            _ => Err(format!("expected string, got {}", describe(v))),
        }
    }
}

impl<T: ArgType> ArgType for Option<T> {
    const TY: ParamTy = T::TY;
    fn from_json(v: &Json) -> Result<Self, String> {
        match v {
            Json::Null => Ok(None),
            v => T::from_json(v).map(Some),
        }
    }
    fn from_expr(e: Expr) -> Option<Self> {
        T::from_expr(e).map(Some)
    }
}

/// A duration in whole seconds; written `30s`, `5m`, `1h`, `1500ms` or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub u64);

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0))
    }
}

impl Secs {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl ArgType for Secs {
    const TY: ParamTy = ParamTy::Duration;
    fn from_json(v: &Json) -> Result<Self, String> {
        match v {
            Json::Number(n) => n
                .as_u64()
                .map(Secs)
                .ok_or_else(|| format!("expected a duration, got {}", describe(v))),
            Json::String(s) => parse_secs(s).map(Secs),
            _ => Err(format!(
                "expected a duration (30s, 5m, 1h), got {}",
                describe(v)
            )),
        }
    }
}

/// `30s`, `5m`, `2h`, `1500ms` (rounded up to whole seconds), or a number of seconds.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    let d = crate::units::parse_duration(s)?;
    Ok(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A CEL expression an action evaluates itself (`assert`'s `fail_if`).
#[derive(Debug, Clone)]
pub struct CelExpr(pub Expr);

impl Serialize for CelExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.source)
    }
}

impl ArgType for CelExpr {
    const TY: ParamTy = ParamTy::Cel;
    fn from_json(v: &Json) -> Result<Self, String> {
        Err(format!("expected a CEL expression, got {}", describe(v)))
    }
    fn from_expr(e: Expr) -> Option<Self> {
        Some(CelExpr(e))
    }
}

impl ArgType for Vec<String> {
    const TY: ParamTy = ParamTy::StringList;
    fn from_json(v: &Json) -> Result<Self, String> {
        match v {
            Json::Array(items) => items
                .iter()
                .map(|i| match i {
                    Json::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "expected a list of strings, found {}",
                        describe(other)
                    )),
                })
                .collect(),
            Json::String(s) => Ok(vec![s.clone()]),
            _ => Err(format!("expected a list of strings, got {}", describe(v))),
        }
    }
}

/// Declares a string enum usable as an argument: `arg_enum!(Name { Variant = "text", ... })`.
#[macro_export]
#[doc(hidden)]
macro_rules! runbook_arg_enum {
    ($(#[$meta:meta])* $name:ident { $( $variant:ident = $text:literal ),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        pub enum $name { $( #[serde(rename = $text)] $variant ),+ }
        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str { match self { $( $name::$variant => $text ),+ } }
        }
        impl $crate::runbook::args::ArgType for $name {
            const TY: $crate::runbook::args::ParamTy = $crate::runbook::args::ParamTy::Enum(Self::NAMES);
            fn from_json(v: &serde_json::Value) -> Result<Self, String> {
                match v.as_str() {
                    $( Some($text) => Ok($name::$variant), )+
                    Some(other) => Err(format!("`{other}` is not one of {}", Self::NAMES.join(", "))),
                    None => Err(format!("expected one of {}, got {}", Self::NAMES.join(", "), $crate::runbook::expr::describe(v))),
                }
            }
        }
        impl $crate::runbook::args::ArgType for Vec<$name> {
            const TY: $crate::runbook::args::ParamTy = $crate::runbook::args::ParamTy::EnumList($name::NAMES);
            fn from_json(v: &serde_json::Value) -> Result<Self, String> {
                match v {
                    serde_json::Value::Array(items) => items.iter().map(<$name as $crate::runbook::args::ArgType>::from_json).collect(),
                    serde_json::Value::String(_) => Ok(vec![<$name as $crate::runbook::args::ArgType>::from_json(v)?]),
                    _ => Err(format!("expected a list of {}, got {}", $name::NAMES.join("|"), $crate::runbook::expr::describe(v))),
                }
            }
        }
    };
}

/// An argument as written: a literal, one expression, or a string template.
#[derive(Debug, Clone)]
pub enum Arg<T> {
    Lit(T),
    Expr(Expr),
    Template(Template),
}

impl<T: ArgType> Arg<T> {
    /// As `show` prints it.
    pub fn shown(&self) -> String {
        match self {
            Arg::Lit(v) => match serde_json::to_value(v) {
                Ok(Json::String(s)) => s,
                Ok(Json::Null) => "none".into(),
                Ok(other) => other.to_string(),
                Err(_) => format!("{v:?}"),
            },
            Arg::Expr(e) => format!("${{{{ {} }}}}", e.source),
            Arg::Template(t) => t.source.clone(),
        }
    }

    /// Whether the value is known without running (a literal).
    pub fn literal(&self) -> Option<&T> {
        match self {
            Arg::Lit(v) => Some(v),
            _ => None,
        }
    }
}

/// A string with `${{ expr }}` parts.
#[derive(Debug, Clone)]
pub struct Template {
    pub source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Renders with the run's values; lists and maps render as JSON.
    pub fn render(&self, b: &Bindings) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => match e.eval(b)? {
                    Json::String(s) => out.push_str(&s),
                    Json::Null => out.push_str("null"),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }

    /// Every expression inside.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }
}

/// Splits `text ${{ a }} more ${{ b }}` into parts; `Ok(None)` when there is no `${{`.
pub fn split_template(s: &str) -> Result<Option<Vec<(bool, String)>>, String> {
    if !s.contains("${{") {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            parts.push((false, rest[..start].to_string()));
        }
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| "`${{` without its closing `}}`".to_string())?;
        parts.push((true, after[..end].trim().to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push((false, rest.to_string()));
    }
    Ok(Some(parts))
}

/// Reads one step's `with:` against the action's parameters, collecting errors.
pub struct ArgReader<'a> {
    pub action: &'static str,
    pub params: &'static [Param],
    map: BTreeMap<String, Spanned<Json>>,
    used: BTreeSet<String>,
    /// Where `with:` (or, without it, the step) is.
    pub pos: Pos,
    pub diags: &'a mut Diags,
    pub scope: &'a Scope<'a>,
}

impl<'a> ArgReader<'a> {
    pub fn new(
        action: &'static str,
        params: &'static [Param],
        map: BTreeMap<String, Spanned<Json>>,
        pos: Pos,
        diags: &'a mut Diags,
        scope: &'a Scope<'a>,
    ) -> ArgReader<'a> {
        ArgReader {
            action,
            params,
            map,
            used: BTreeSet::new(),
            pos,
            diags,
            scope,
        }
    }

    fn compile(&mut self, src: &str, pos: Pos, what: &str) -> Option<Expr> {
        match Expr::compile(src, pos) {
            Ok(e) => {
                let mut ok = true;
                for (msg, help) in e.check(self.scope) {
                    self.diags.push(pos, format!("{what}: {msg}"), help);
                    ok = false;
                }
                ok.then_some(e)
            }
            Err(msg) => {
                self.diags.push(
                    pos,
                    format!("{what}: bad expression `{src}`: {msg}"),
                    None::<String>,
                );
                None
            }
        }
    }

    /// Takes parameter `name`; `default` None means required. None when it is missing or bad
    /// (the error is recorded).
    pub fn take<T: ArgType>(&mut self, name: &'static str, default: Option<T>) -> Option<Arg<T>> {
        debug_assert!(
            self.params.iter().any(|p| p.name == name),
            "{}: parameter {name} is not declared",
            self.action
        );
        self.used.insert(name.to_string());
        let Some(v) = self.map.get(name).cloned() else {
            return match default {
                Some(d) => Some(Arg::Lit(d)),
                None => {
                    self.diags.push(
                        self.pos,
                        format!("{} needs the argument `{name}`", self.action),
                        Some(format!("`{name}`: {}", T::TY.describe())),
                    );
                    None
                }
            };
        };
        let pos = Pos::at(&v);
        let what = format!("argument `{name}` of {}", self.action);
        if let ParamTy::Cel = T::TY {
            let Json::String(src) = &v.value else {
                self.diags.error(
                    pos,
                    format!(
                        "{what}: expected a CEL expression (a string), got {}",
                        describe(&v.value)
                    ),
                );
                return None;
            };
            let src = split_template(src)
                .ok()
                .flatten()
                .and_then(|p| match p.as_slice() {
                    [(true, inner)] => Some(inner.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| src.clone());
            let e = self.compile(&src, pos, &what)?;
            if let Some((msg, help)) = e.check_bool(self.scope) {
                self.diags.push(pos, format!("{what}: {msg}"), help);
                return None;
            }
            return T::from_expr(e).map(Arg::Lit);
        }
        if let Json::String(s) = &v.value {
            match split_template(s) {
                Err(msg) => {
                    self.diags.error(pos, format!("{what}: {msg}"));
                    return None;
                }
                Ok(Some(parts)) => {
                    if let [(true, src)] = parts.as_slice() {
                        let e = self.compile(src, pos, &what)?;
                        let ty = e.static_type(self.scope);
                        if !T::TY.accepts(ty) {
                            self.diags.push(
                                pos,
                                format!(
                                    "{what}: `{src}` is {} {}, but `{name}` takes {}",
                                    if matches!(ty, Ty::Int) { "an" } else { "a" },
                                    ty.as_str(),
                                    T::TY.describe()
                                ),
                                None::<String>,
                            );
                            return None;
                        }
                        return Some(Arg::Expr(e));
                    }
                    if !matches!(T::TY, ParamTy::String) {
                        self.diags.push(
                            pos,
                            format!("{what}: text around `${{{{ }}}}` makes a string, but `{name}` takes {}", T::TY.describe()),
                            Some("write the expression alone: `${{ expr }}`"),
                        );
                        return None;
                    }
                    let mut out = Vec::new();
                    for (is_expr, text) in parts {
                        if is_expr {
                            out.push(Part::Expr(self.compile(&text, pos, &what)?));
                        } else {
                            out.push(Part::Text(text));
                        }
                    }
                    return Some(Arg::Template(Template {
                        source: s.clone(),
                        parts: out,
                    }));
                }
                Ok(None) => {}
            }
        }
        match T::from_json(&v.value) {
            Ok(t) => Some(Arg::Lit(t)),
            Err(msg) => {
                self.diags.push(
                    pos,
                    format!("{what}: {msg}"),
                    Some(format!("`{name}` takes {}", T::TY.describe())),
                );
                None
            }
        }
    }

    /// Reports every name that is not a parameter of the action.
    pub fn finish(self) {
        let names: Vec<&str> = self.params.iter().map(|p| p.name).collect();
        for (k, v) in &self.map {
            if !self.used.contains(k) {
                let help = if names.is_empty() {
                    format!("{} takes no arguments", self.action)
                } else {
                    allowed_help(k, &names)
                };
                self.diags.push(
                    Pos::at(v),
                    format!("unknown argument `{k}` for {}", self.action),
                    Some(help),
                );
            }
        }
    }
}

/// Resolves arguments at run time and records their values for the transcript.
pub struct Resolver<'a> {
    pub bindings: &'a Bindings,
    pub record: serde_json::Map<String, Json>,
}

impl<'a> Resolver<'a> {
    pub fn new(bindings: &'a Bindings) -> Resolver<'a> {
        Resolver {
            bindings,
            record: serde_json::Map::new(),
        }
    }

    pub fn get<T: ArgType>(&mut self, name: &str, a: &Arg<T>) -> Result<T, String> {
        let v = match a {
            Arg::Lit(v) => v.clone(),
            Arg::Expr(e) => {
                let got = e.eval(self.bindings)?;
                T::from_json(&got).map_err(|m| {
                    format!(
                        "argument `{name}`: `{}` gave {}: {m}",
                        e.source,
                        describe(&got)
                    )
                })?
            }
            Arg::Template(t) => {
                let s = t.render(self.bindings)?;
                T::from_json(&Json::String(s)).map_err(|m| format!("argument `{name}`: {m}"))?
            }
        };
        self.record.insert(
            name.to_string(),
            serde_json::to_value(&v).unwrap_or(Json::Null),
        );
        Ok(v)
    }
}

/// Parsed (possibly expressions) or resolved (plain values) arguments.
pub trait Mode: Clone + std::fmt::Debug {
    type T<X: ArgType>: Clone + std::fmt::Debug;
}

/// Arguments as loaded: each may still be an expression.
#[derive(Debug, Clone)]
pub struct Parsed;
impl Mode for Parsed {
    type T<X: ArgType> = Arg<X>;
}

/// Arguments with their values.
#[derive(Debug, Clone)]
pub struct Resolved;
impl Mode for Resolved {
    type T<X: ArgType> = X;
}

/// Declares an action's arguments: the struct (generic over [`Mode`]), its parameter table,
/// its reader and its resolver, from one list of `name: Type = [default | required], "doc";`.
#[macro_export]
#[doc(hidden)]
macro_rules! runbook_args {
    (@required required) => { true };
    (@required $($t:tt)*) => { false };
    (@default $ty:ty; required) => { None::<$ty> };
    (@default $ty:ty; $($t:tt)*) => { Some::<$ty>($($t)*) };
    (@shown $ty:ty; required) => { None };
    (@shown $ty:ty; $($t:tt)*) => {
        Some((|| serde_json::to_value::<$ty>($($t)*).unwrap_or(serde_json::Value::Null)) as fn() -> serde_json::Value)
    };
    ($(#[$meta:meta])* $name:ident { $( $field:ident : $ty:ty = [$($def:tt)*] , $doc:literal ; )* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name<M: $crate::runbook::args::Mode = $crate::runbook::args::Parsed> {
            $( #[doc = $doc] pub $field: M::T<$ty>, )*
            #[doc(hidden)]
            pub _mode: std::marker::PhantomData<M>,
        }
        impl $name<$crate::runbook::args::Parsed> {
            pub const PARAMS: &'static [$crate::runbook::args::Param] = &[ $( $crate::runbook::args::Param {
                name: stringify!($field),
                ty: <$ty as $crate::runbook::args::ArgType>::TY,
                required: $crate::runbook_args!(@required $($def)*),
                default: $crate::runbook_args!(@shown $ty; $($def)*),
                doc: $doc,
            }, )* ];
            #[allow(unused_variables)]
            pub fn parse(r: &mut $crate::runbook::args::ArgReader<'_>) -> Option<Self> {
                $( let $field = r.take::<$ty>(stringify!($field), $crate::runbook_args!(@default $ty; $($def)*)); )*
                Some(Self { $( $field: $field?, )* _mode: std::marker::PhantomData })
            }
            #[allow(unused_variables)]
            pub fn resolve(&self, r: &mut $crate::runbook::args::Resolver<'_>) -> Result<$name<$crate::runbook::args::Resolved>, String> {
                Ok($name { $( $field: r.get(stringify!($field), &self.$field)?, )* _mode: std::marker::PhantomData })
            }
            pub fn shown(&self) -> Vec<(&'static str, String)> {
                vec![ $( (stringify!($field), self.$field.shown()), )* ]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split() {
        assert_eq!(split_template("plain").unwrap(), None);
        assert_eq!(
            split_template("${{ inputs.x }}").unwrap().unwrap(),
            vec![(true, "inputs.x".to_string())]
        );
        assert_eq!(
            split_template("a ${{x}} b").unwrap().unwrap(),
            vec![
                (false, "a ".to_string()),
                (true, "x".to_string()),
                (false, " b".to_string())
            ]
        );
        assert!(split_template("a ${{ x").is_err());
    }

    #[test]
    fn values_convert() {
        assert_eq!(i64::from_json(&Json::from(5)).unwrap(), 5);
        assert!(
            i64::from_json(&Json::from("5"))
                .unwrap_err()
                .contains("expected int, got string")
        );
        assert_eq!(Secs::from_json(&Json::from("2m")).unwrap(), Secs(120));
        assert_eq!(Secs::from_json(&Json::from(30)).unwrap(), Secs(30));
        assert!(Secs::from_json(&Json::from("soon")).is_err());
        assert_eq!(Option::<i64>::from_json(&Json::Null).unwrap(), None);
        assert!(bool::from_json(&Json::from("yes")).is_err());
    }
}
