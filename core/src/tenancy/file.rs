//! The tenants file: YAML that declares flavors, priority classes, cohorts and tenants.
//!
//! [`parse`] turns the text into a validated [`Tenancy`]; [`load`] reads a file first. Every
//! refusal is a [`TenantFileError`] naming the file, the line, the field (a path such as
//! `tenants[2].quotas.A100.lendingLimit`) and what is wrong, with how to fix it. The YAML tree is
//! walked by hand (through `marked-yaml`) rather than deserialised, so that every field, unknown
//! keys included, comes with its line.
//!
//! Units: quantities are GPUs (cores for `cpu`) with at most 3 decimals, or Kubernetes milli
//! strings such as `"2500m"`, stored in milli-units; prices are per GPU-hour (core-hour for
//! `cpu`) with at most 6 decimals, stored in micro-units; durations are whole seconds or a number
//! with a unit: `90s`, `5m`, `2h`, `1d`. See `examples/tenants/` for annotated files.

use super::{
    Budget, Cohort, Flavor, FlavorQuota, Kind, Milli, PriorityClass, Seconds, Tenancy, Tenant, Timing, WhenExhausted,
};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};
use std::collections::HashMap;
use std::path::Path;

/// A refused tenants file: where, which field, what is wrong and how to fix it.
///
/// Displays as `{file}:{line}: {field}: {problem}`, leaving out the line or field when unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {}{problem}", at_line(.line), field_prefix(.field))]
pub struct TenantFileError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub problem: String,
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

type Res<T> = Result<T, TenantFileError>;

/// Reads and parses the tenants file at `path`.
pub fn load(path: &Path) -> Res<Tenancy> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text),
        Err(e) => Err(TenantFileError {
            file,
            line: None,
            field: String::new(),
            problem: format!("cannot read the tenants file: {e}; check the path"),
        }),
    }
}

/// Parses and validates a tenants file; `file` is the name used in error messages.
pub fn parse(file: &str, text: &str) -> Res<Tenancy> {
    parse_tree(text).map_err(|e| TenantFileError { file: file.to_string(), ..e })
}

fn parse_tree(text: &str) -> Res<Tenancy> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
    let root = marked_yaml::parse_yaml_with_options(0, text, options).map_err(yaml_error)?;
    let top = Obj::new(&root, "", TOP_KEYS)?;
    let currency = match top.opt("currency") {
        Some(node) => name_text(node, "currency")?,
        None => "USD".to_string(),
    };
    let timing = top.opt("timing").map(timing).transpose()?.unwrap_or_default();
    let flavors = flavors(&top)?;
    let priority_classes = classes(&top)?;
    let mut kinds = default_kind_classes(&priority_classes);
    if let Some(node) = top.opt("kindPriorities") {
        for (kind, class, _) in kind_map(node, "kindPriorities", &priority_classes)? {
            kinds[kind.index()] = class;
        }
    }
    let cohorts = cohorts(&top)?;
    let shared = Shared { flavors: &flavors, classes: &priority_classes, cohorts: &cohorts, kinds };
    let tenants = tenants(&top, &shared)?;
    Ok(Tenancy { flavors, cohorts, tenants, priority_classes, timing, currency })
}

const TOP_KEYS: &[&str] = &["currency", "timing", "flavors", "priorityClasses", "kindPriorities", "cohorts", "tenants"];
const TENANT_KEYS: &[&str] =
    &["name", "namespaces", "cohort", "weight", "priorityClasses", "kindPriorities", "quotas", "prices", "budget"];

// ---------------------------------------------------------------------------------------------
// Errors and YAML access

fn err(line: Option<usize>, field: &str, problem: impl Into<String>) -> TenantFileError {
    TenantFileError { file: String::new(), line, field: field.to_string(), problem: problem.into() }
}

/// An error at `node`.
fn fail<T>(node: &Node, field: &str, problem: impl Into<String>) -> Res<T> {
    Err(err(line(node), field, problem))
}

/// The 1-based line where a node starts.
fn line(node: &Node) -> Option<usize> {
    node.span().start().map(|m| m.line())
}

fn key_line(key: &MarkedScalarNode) -> Option<usize> {
    key.span().start().map(|m| m.line())
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn yaml_error(e: LoadError) -> TenantFileError {
    let (marker, problem) = match &e {
        LoadError::ScanError(m, scan) => {
            (Some(*m), format!("YAML syntax error: {}; check the indentation, colons and brackets", scan.info()))
        }
        LoadError::DuplicateKey(dup) => {
            let first = key_line(&dup.prev_key).map_or(String::new(), |l| format!(" (first on line {l})"));
            let problem = format!("key `{}` appears twice in the same mapping{first}; remove one", dup.key.as_str());
            return err(key_line(&dup.key), dup.key.as_str(), problem);
        }
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (Some(*m), "the file must be a mapping with keys such as `flavors:` and `tenants:`".to_string())
        }
        LoadError::UnexpectedAnchor(m) => {
            (Some(*m), "YAML anchors and aliases (&name, *name) are not supported; write the values out".to_string())
        }
        LoadError::UnexpectedTag(m) => (Some(*m), "YAML tags (!name) are not supported; remove the tag".to_string()),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(*m), "mapping keys must be plain names, not lists or mappings".to_string())
        }
    };
    err(marker.map(|m| m.line()), "", problem)
}

/// A plain (unquoted) empty value, `~` or `null`: treated as if the key were absent.
fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

fn wrong_type(node: &Node, field: &str, want: &str) -> TenantFileError {
    let found = match node {
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping (key: value)",
        Node::Sequence(_) => "a list",
    };
    err(line(node), field, format!("expected {want}, found {found}"))
}

/// The text of a single value.
fn text<'a>(node: &'a Node, field: &str) -> Res<&'a str> {
    match node {
        Node::Scalar(s) => Ok(s.as_str().trim()),
        _ => Err(wrong_type(node, field, "a single value")),
    }
}

/// A non-empty single value, as used for names.
fn name_text(node: &Node, field: &str) -> Res<String> {
    match text(node, field)? {
        "" => fail(node, field, "is empty; give it a name"),
        s => Ok(s.to_string()),
    }
}

/// The items of a list that must have at least one; `hint` says what to put in it.
fn nonempty_list<'a>(node: &'a Node, field: &str, hint: &str) -> Res<&'a [Node]> {
    let items = node.as_sequence().ok_or_else(|| wrong_type(node, field, "a list"))?;
    if items.is_empty() {
        return fail(node, field, format!("the list is empty; {hint}"));
    }
    Ok(items)
}

/// The entries of a mapping whose keys are free (flavor names, kind names).
fn entries<'a>(node: &'a Node, field: &str) -> Res<&'a MarkedMappingNode> {
    node.as_mapping().ok_or_else(|| wrong_type(node, field, "a mapping (key: value)"))
}

/// ` (did you mean `x`?)` when a candidate is a likely typo of `name`.
fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let close = candidates.into_iter().map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c)).min();
    match close {
        Some((d, c)) if d <= 2 && d < name.chars().count() => format!(" (did you mean `{c}`?)"),
        _ => String::new(),
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A mapping whose keys have been checked against the allowed ones.
struct Obj<'a> {
    node: &'a Node,
    map: &'a MarkedMappingNode,
    path: String,
}

impl<'a> Obj<'a> {
    /// `node` as a mapping; any key not in `allowed` is refused, with the allowed ones listed.
    fn new(node: &'a Node, path: &str, allowed: &[&str]) -> Res<Self> {
        let map = entries(node, path)?;
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let problem = format!(
                "unknown key `{}`{}; allowed keys here: {}",
                key.as_str(),
                suggest(key.as_str(), allowed.iter().copied()),
                allowed.join(", ")
            );
            return Err(err(key_line(key), &join(path, key.as_str()), problem));
        }
        Ok(Obj { node, map, path: path.to_string() })
    }

    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`, `None` when absent or null.
    fn opt(&self, key: &str) -> Option<&'a Node> {
        self.map.get_node(key).filter(|n| !is_null(n))
    }

    /// The value of a required key; `hint` says what to write.
    fn req(&self, key: &str, hint: &str) -> Res<&'a Node> {
        let missing = || err(line(self.node), &self.field(key), format!("missing required key `{key}`; {hint}"));
        self.opt(key).ok_or_else(missing)
    }
}

/// Names declared in one list, to refuse duplicates.
struct Names {
    what: &'static str,
    list: &'static str,
    seen: HashMap<String, usize>,
}

impl Names {
    fn new(what: &'static str, list: &'static str) -> Self {
        Names { what, list, seen: HashMap::new() }
    }

    /// The `name` of item `i`, read by `read`; refused when an earlier item has it.
    fn add(&mut self, obj: &Obj, i: usize, read: fn(&Node, &str) -> Res<String>) -> Res<String> {
        let node = obj.req("name", &format!("give the {} a name, e.g. `name: example`", self.what))?;
        let name = read(node, &obj.field("name"))?;
        if let Some(first) = self.seen.insert(name.clone(), i) {
            let problem = format!(
                "{} `{name}` is declared twice (also {}[{first}]); names must be unique, so rename or remove one",
                self.what, self.list
            );
            return fail(node, &obj.field("name"), problem);
        }
        Ok(name)
    }
}

/// Index of the item named by `node` in `names`; `what` and `list` name the kind of item and the
/// list that declares them, for the error.
fn lookup<'n>(
    node: &Node,
    field: &str,
    names: impl Iterator<Item = &'n str> + Clone,
    what: &str,
    list: &str,
) -> Res<usize> {
    let name = text(node, field)?;
    if let Some(i) = names.clone().position(|n| n == name) {
        return Ok(i);
    }
    let declared: Vec<&str> = names.clone().collect();
    let problem = format!(
        "unknown {what} `{name}`{}; declared: {}; declare it under `{list}` or fix the name",
        suggest(name, names),
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    );
    fail(node, field, problem)
}

/// `lowercase alnum and '-', 1..=63 chars, alnum at both ends`, as Kubernetes namespaces.
fn dns_label(node: &Node, field: &str) -> Res<String> {
    let s = name_text(node, field)?;
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.len() <= 63 && s.chars().all(ok_char) && !s.starts_with('-') && !s.ends_with('-') {
        return Ok(s);
    }
    let rule = "use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit";
    fail(node, field, format!("`{s}` is not a valid name; {rule}"))
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A plain decimal (`12`, `-4`, `2.50`) as an integer scaled by 10^`places` (`2.5`, 3 -> 2500);
/// `Err` says why not.
fn decimal(s: &str, places: usize) -> Result<i128, &'static str> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err("not a number");
    }
    if frac.len() > places {
        return Err("too many decimals to count exactly");
    }
    if int.trim_start_matches('0').len() > 24 {
        return Err("too large");
    }
    let padded = int.bytes().chain(frac.bytes()).chain(std::iter::repeat_n(b'0', places - frac.len()));
    let value = padded.fold(0i128, |v, b| v * 10 + i128::from(b - b'0'));
    Ok(if negative { -value } else { value })
}

/// A kind of fixed-point amount in the file.
struct Amount {
    /// Decimals kept: the stored integer is the amount times 10^places.
    places: usize,
    /// Whether Kubernetes milli strings (`"2500m"`) are accepted.
    milli_suffix: bool,
    plural: &'static str,
    example: &'static str,
}

/// GPUs (cores for `cpu`), stored in milli-units.
const QUANTITY: Amount = Amount {
    places: 3,
    milli_suffix: true,
    plural: "quotas",
    example: "a number of GPUs (cores for cpu) with at most 3 decimals, such as 2.5, or milli-units such as \"2500m\"",
};
/// Currency per GPU-hour (core-hour for `cpu`), stored in micro-units.
const PRICE: Amount = Amount {
    places: 6,
    milli_suffix: false,
    plural: "prices",
    example: "a price per GPU-hour (core-hour for cpu) with at most 6 decimals, such as 2.40",
};
/// GPU-hours, stored in milli-units.
const HOURS: Amount = Amount {
    places: 3,
    milli_suffix: false,
    plural: "budgets",
    example: "a number of GPU-hours with at most 3 decimals, such as 5000",
};

/// A non-negative fixed-point amount, scaled to an integer. `what` names it in messages.
fn amount(node: &Node, field: &str, what: &str, kind: &Amount) -> Res<u64> {
    let s = text(node, field)?;
    let parsed = match s.strip_suffix('m') {
        Some(milli) if kind.milli_suffix => decimal(milli, 0),
        _ => decimal(s, kind.places),
    };
    let why = match parsed.map(u64::try_from) {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(_)) if s.starts_with('-') => {
            return fail(node, field, format!("{what} is {s}; {} cannot be negative, use 0 or more", kind.plural))
        }
        Ok(Err(_)) => "too large",
        Err(why) => why,
    };
    fail(node, field, format!("{what} is {s:?}: {why}; write {}", kind.example))
}

/// Milli-units as a plain number of GPUs or cores: 2500 -> "2.5".
fn units(milli: Milli) -> String {
    let frac = format!("{:03}", milli % 1000);
    match frac.trim_end_matches('0') {
        "" => format!("{}", milli / 1000),
        frac => format!("{}.{frac}", milli / 1000),
    }
}

fn int32(node: &Node, field: &str) -> Res<i32> {
    let s = text(node, field)?;
    match decimal(s, 0).map(i32::try_from) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => fail(
            node,
            field,
            format!("{s} is outside the 32-bit range {}..={}; use a smaller value", i32::MIN, i32::MAX),
        ),
        Err(_) => fail(node, field, format!("{s:?} is not a whole number; write one such as 500")),
    }
}

fn weight(node: &Node, field: &str) -> Res<f64> {
    let s = text(node, field)?;
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => {
            let why = "it must be a number greater than 0 (shares of borrowed capacity follow it), e.g. 1";
            fail(node, field, format!("weight is {s}; {why}"))
        }
    }
}

/// Whole seconds, or a whole number with a unit: `90s`, `5m`, `2h`, `1d`.
fn duration(node: &Node, field: &str) -> Res<Seconds> {
    let s = text(node, field)?;
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = "smhd".find(unit).and_then(|i| [1, 60, 3600, 86400].get(i).copied());
    match (number.parse::<u32>(), scale) {
        (Ok(n), Some(scale)) => Ok(Seconds::from(n) * scale),
        _ => {
            let how = "write whole seconds or a whole number with s, m, h or d, such as 90s, 5m, 2h, 1d";
            fail(node, field, format!("{s:?} is not a duration; {how}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sections

fn timing(node: &Node) -> Res<Timing> {
    let obj = Obj::new(node, "timing", &["reclaimWindow", "minRuntime"])?;
    let get = |key: &str, default| obj.opt(key).map_or(Ok(default), |n| duration(n, &obj.field(key)));
    let default = Timing::default();
    Ok(Timing {
        reclaim_window: get("reclaimWindow", default.reclaim_window)?,
        min_runtime: get("minRuntime", default.min_runtime)?,
    })
}

fn flavors(top: &Obj) -> Res<Vec<Flavor>> {
    let hint = "list the GPU models (and `cpu`) that quotas are given in, e.g. `flavors: [{name: A100}]`";
    let items = nonempty_list(top.req("flavors", hint)?, "flavors", hint)?;
    let mut names = Names::new("flavor", "flavors");
    let mut flavors = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let obj = Obj::new(item, &format!("flavors[{i}]"), &["name", "price"])?;
        let name = names.add(&obj, i, name_text)?;
        let price = obj.opt("price").map_or(Ok(0), |n| amount(n, &obj.field("price"), "price", &PRICE))?;
        flavors.push(Flavor { name, price_micros: price });
    }
    Ok(flavors)
}

/// The declared priority classes, or the built-in ones named after the kinds.
fn classes(top: &Obj) -> Res<Vec<PriorityClass>> {
    let Some(node) = top.opt("priorityClasses") else {
        let builtin = |k: Kind| PriorityClass { name: k.name().to_string(), value: k.default_priority() };
        return Ok(Kind::ALL.into_iter().map(builtin).collect());
    };
    let hint = "list at least one class, or remove the key to use the built-in classes";
    let items = nonempty_list(node, "priorityClasses", hint)?;
    let mut names = Names::new("priority class", "priorityClasses");
    let mut classes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let obj = Obj::new(item, &format!("priorityClasses[{i}]"), &["name", "value"])?;
        let name = names.add(&obj, i, name_text)?;
        let value = int32(obj.req("value", "give the class a priority, e.g. `value: 500`")?, &obj.field("value"))?;
        classes.push(PriorityClass { name, value });
    }
    Ok(classes)
}

/// Per kind: the class named after it, else the class whose value is closest to the kind's
/// default priority (ties to the lower value).
fn default_kind_classes(classes: &[PriorityClass]) -> [usize; 5] {
    Kind::ALL.map(|kind| {
        let distance = |c: &PriorityClass| ((i64::from(c.value) - i64::from(kind.default_priority())).abs(), c.value);
        let closest = (0..classes.len()).min_by_key(|&i| distance(&classes[i]));
        classes.iter().position(|c| c.name == kind.name()).or(closest).unwrap_or(0)
    })
}

/// The entries of a `kindPriorities` mapping: kind, class index and the value's node.
fn kind_map<'a>(node: &'a Node, field: &str, classes: &[PriorityClass]) -> Res<Vec<(Kind, usize, &'a Node)>> {
    let kinds = || Kind::ALL.into_iter().map(Kind::name);
    let mut out = Vec::new();
    for (key, value) in entries(node, field)?.iter() {
        let field = join(field, key.as_str());
        let Some(kind) = Kind::parse(key.as_str()) else {
            let list = kinds().collect::<Vec<_>>().join(", ");
            let problem =
                format!("unknown kind `{}`{}; kinds are: {list}", key.as_str(), suggest(key.as_str(), kinds()));
            return Err(err(key_line(key), &field, problem));
        };
        let class =
            lookup(value, &field, classes.iter().map(|c| c.name.as_str()), "priority class", "priorityClasses")?;
        out.push((kind, class, value));
    }
    Ok(out)
}

fn cohorts(top: &Obj) -> Res<Vec<Cohort>> {
    let Some(node) = top.opt("cohorts") else { return Ok(Vec::new()) };
    let items = node.as_sequence().ok_or_else(|| wrong_type(node, "cohorts", "a list"))?;
    let mut names = Names::new("cohort", "cohorts");
    let mut cohorts = Vec::with_capacity(items.len());
    let mut parents = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let obj = Obj::new(item, &format!("cohorts[{i}]"), &["name", "parent"])?;
        cohorts.push(Cohort { name: names.add(&obj, i, name_text)?, parent: None });
        if let Some(parent) = obj.opt("parent") {
            parents.push((i, parent, obj.field("parent")));
        }
    }
    for (i, parent, field) in &parents {
        let index = lookup(parent, field, cohorts.iter().map(|c| c.name.as_str()), "cohort", "cohorts")?;
        cohorts[*i].parent = Some(index);
    }
    for (i, parent, field) in &parents {
        if let Some(cycle) = cycle_from(&cohorts, *i) {
            let names: Vec<&str> = cycle.iter().filter_map(|&c| cohorts.get(c)).map(|c| c.name.as_str()).collect();
            return fail(parent, field, format!("cohort cycle: {}; remove one parent", names.join(" -> ")));
        }
    }
    Ok(cohorts)
}

/// The chain of parents from `start` back to itself, when `start` is on a cycle.
fn cycle_from(cohorts: &[Cohort], start: usize) -> Option<Vec<usize>> {
    let mut chain = vec![start];
    let mut at = cohorts.get(start)?.parent?;
    while chain.len() <= cohorts.len() {
        chain.push(at);
        if at == start {
            return Some(chain);
        }
        at = cohorts.get(at)?.parent?;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Tenants

/// What tenants refer to, declared earlier in the file.
struct Shared<'a> {
    flavors: &'a [Flavor],
    classes: &'a [PriorityClass],
    cohorts: &'a [Cohort],
    /// File-wide class per kind.
    kinds: [usize; 5],
}

impl Shared<'_> {
    fn class(&self, node: &Node, field: &str) -> Res<usize> {
        lookup(node, field, self.classes.iter().map(|c| c.name.as_str()), "priority class", "priorityClasses")
    }

    /// A per-flavor list from the mapping under `key` (flavor name -> value), starting from
    /// `init`; flavors must be declared.
    fn per_flavor<T>(
        &self,
        obj: &Obj,
        key: &str,
        mut init: Vec<T>,
        value: impl Fn(&Node, &str) -> Res<T>,
    ) -> Res<Vec<T>> {
        let Some(node) = obj.opt(key) else { return Ok(init) };
        for (flavor, node) in entries(node, &obj.field(key))?.iter() {
            let field = join(&obj.field(key), flavor.as_str());
            let names = self.flavors.iter().map(|f| f.name.as_str());
            let f = lookup(&Node::from(flavor.clone()), &field, names, "flavor", "flavors")?;
            if let Some(slot) = init.get_mut(f) {
                *slot = value(node, &field)?;
            }
        }
        Ok(init)
    }
}

fn tenants(top: &Obj, shared: &Shared) -> Res<Vec<Tenant>> {
    let hint = "list at least one tenant, e.g. `tenants: [{name: team-a, namespaces: [team-a]}]`";
    let items = nonempty_list(top.req("tenants", hint)?, "tenants", hint)?;
    let mut names = Names::new("tenant", "tenants");
    let mut owners = HashMap::new();
    let mut tenants: Vec<Tenant> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let obj = Obj::new(item, &format!("tenants[{i}]"), TENANT_KEYS)?;
        let name = names.add(&obj, i, dns_label)?;
        let namespaces = namespaces(&obj, &name, &mut owners, &tenants)?;
        tenants.push(tenant(&obj, name, namespaces, shared)?);
    }
    Ok(tenants)
}

/// The tenant's namespaces, each claimed in `owners` (namespace -> tenant index).
fn namespaces(obj: &Obj, name: &str, owners: &mut HashMap<String, usize>, earlier: &[Tenant]) -> Res<Vec<String>> {
    let hint = "list the Kubernetes namespaces whose workloads belong to this tenant, e.g. `namespaces: [team-a]`";
    let field = obj.field("namespaces");
    let items = nonempty_list(obj.req("namespaces", hint)?, &field, hint)?;
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let field = format!("{field}[{k}]");
        let ns = dns_label(item, &field)?;
        if let Some(&owner) = owners.get(&ns) {
            let problem = match earlier.get(owner) {
                Some(other) => format!(
                    "namespace `{ns}` belongs to both tenant `{}` (tenants[{owner}]) and tenant `{name}`; \
                     a namespace may belong to one tenant only, so remove it from one of them",
                    other.name
                ),
                None => format!("namespace `{ns}` is listed twice for tenant `{name}`; remove one"),
            };
            return fail(item, &field, problem);
        }
        owners.insert(ns.clone(), earlier.len());
        out.push(ns);
    }
    Ok(out)
}

fn tenant(obj: &Obj, name: String, namespaces: Vec<String>, shared: &Shared) -> Res<Tenant> {
    let cohorts = shared.cohorts.iter().map(|c| c.name.as_str());
    let cohort = obj.opt("cohort").map(|n| lookup(n, &obj.field("cohort"), cohorts, "cohort", "cohorts"));
    let allowed_classes = allowed_classes(obj, shared)?;
    let prices = shared.flavors.iter().map(|f| f.price_micros).collect();
    Ok(Tenant {
        name,
        namespaces,
        cohort: cohort.transpose()?,
        quotas: shared.per_flavor(obj, "quotas", vec![FlavorQuota::default(); shared.flavors.len()], quota)?,
        weight: obj.opt("weight").map_or(Ok(1.0), |n| weight(n, &obj.field("weight")))?,
        kind_classes: kind_classes(obj, shared, &allowed_classes)?,
        allowed_classes,
        prices_micros: shared.per_flavor(obj, "prices", prices, |n, field| amount(n, field, "price", &PRICE))?,
        budget: obj.opt("budget").map(|n| budget(n, &obj.field("budget"))).transpose()?,
    })
}

fn allowed_classes(obj: &Obj, shared: &Shared) -> Res<Vec<usize>> {
    let Some(node) = obj.opt("priorityClasses") else { return Ok((0..shared.classes.len()).collect()) };
    let field = obj.field("priorityClasses");
    let items = nonempty_list(node, &field, "list at least one class, or remove the key to allow them all")?;
    let mut allowed = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let field = format!("{field}[{k}]");
        let class = shared.class(item, &field)?;
        if allowed.contains(&class) {
            return fail(item, &field, "this class is listed twice; remove one");
        }
        allowed.push(class);
    }
    Ok(allowed)
}

/// The class per kind: the tenant's override, else the file-wide one; each must be allowed.
fn kind_classes(obj: &Obj, shared: &Shared, allowed: &[usize]) -> Res<[usize; 5]> {
    let mut kinds = shared.kinds;
    let mut overrides = [None; 5];
    let field = obj.field("kindPriorities");
    if let Some(node) = obj.opt("kindPriorities") {
        for (kind, class, at) in kind_map(node, &field, shared.classes)? {
            kinds[kind.index()] = class;
            overrides[kind.index()] = Some(at);
        }
    }
    let Some(kind) = Kind::ALL.into_iter().find(|k| !allowed.contains(&kinds[k.index()])) else { return Ok(kinds) };
    let class = shared.classes.get(kinds[kind.index()]).map_or("?", |c| c.name.as_str());
    let names: Vec<&str> = allowed.iter().filter_map(|&c| shared.classes.get(c)).map(|c| c.name.as_str()).collect();
    let names = names.join(", ");
    let classes_field = obj.field("priorityClasses");
    match overrides[kind.index()] {
        Some(at) => {
            let problem = format!(
                "class `{class}` is not in this tenant's priorityClasses ({names}); \
                 add `{class}` to {classes_field} or choose one of those"
            );
            fail(at, &join(&field, kind.name()), problem)
        }
        None => {
            let problem = format!(
                "kind {kind} runs at class `{class}` by default, which this tenant may not use (allowed: {names}); \
                 add `{class}` to priorityClasses or set kindPriorities.{kind} to one of the allowed classes"
            );
            Err(err(obj.opt("priorityClasses").and_then(line), &classes_field, problem))
        }
    }
}

fn quota(node: &Node, field: &str) -> Res<FlavorQuota> {
    if let Node::Scalar(s) = node {
        let problem = format!("expected a mapping, found a single value; write `{{nominal: {}}}`", s.as_str());
        return fail(node, field, problem);
    }
    let obj = Obj::new(node, field, &["nominal", "borrowingLimit", "lendingLimit"])?;
    let get = |key: &str| obj.opt(key).map(|n| amount(n, &obj.field(key), key, &QUANTITY)).transpose();
    let nominal = obj.req("nominal", "give the guaranteed amount, e.g. `nominal: 8`")?;
    let nominal = amount(nominal, &obj.field("nominal"), "nominal", &QUANTITY)?;
    let quota = FlavorQuota { nominal, borrowing_limit: get("borrowingLimit")?, lending_limit: get("lendingLimit")? };
    match (quota.lending_limit, obj.opt("lendingLimit")) {
        (Some(lend), Some(at)) if lend > nominal => {
            let problem = format!(
                "lendingLimit {} is above nominal {}; a tenant can lend at most its nominal quota, \
                 so lower lendingLimit or raise nominal",
                units(lend),
                units(nominal)
            );
            fail(at, &obj.field("lendingLimit"), problem)
        }
        _ => Ok(quota),
    }
}

fn budget(node: &Node, field: &str) -> Res<Budget> {
    let obj = Obj::new(node, field, &["gpuHoursPerMonth", "whenExhausted"])?;
    let (hours, hours_field) =
        (obj.req("gpuHoursPerMonth", "e.g. `gpuHoursPerMonth: 5000`")?, obj.field("gpuHoursPerMonth"));
    let milli_hours = amount(hours, &hours_field, "gpuHoursPerMonth", &HOURS)?;
    let Some(milli_gpu_seconds) = milli_hours.checked_mul(3600) else {
        return fail(hours, &hours_field, "the budget is too large; use a smaller number");
    };
    let when_exhausted = match obj.opt("whenExhausted") {
        None => WhenExhausted::IdleOnly,
        Some(n) => match text(n, &obj.field("whenExhausted"))? {
            "idle-only" => WhenExhausted::IdleOnly,
            "refuse" => WhenExhausted::Refuse,
            other => {
                let problem =
                    format!("unknown value `{other}`; write `idle-only` (run only on idle capacity) or `refuse`");
                return fail(n, &obj.field("whenExhausted"), problem);
            }
        },
    };
    Ok(Budget { milli_gpu_seconds, when_exhausted })
}
