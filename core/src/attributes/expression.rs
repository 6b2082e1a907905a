//! Attribute expressions: what a `target.attributes` mapping computes from the IdP's
//! attributes, modelled on Entra provisioning expressions but small, total and typed.
//!
//! ```text
//! expression := attribute | string | call
//! attribute  := [ ("okta" | "entra") ":" ] name        name := [A-Za-z0-9_.-]+
//! string     := '"' ( any character but '"' and '\' | '\"' | '\\' )* '"'
//! call       := function "(" [ expression { "," expression } ] ")"
//! function   := Join | Concat | Lower | Upper | Coalesce | Switch | Trim   (any case)
//! ```
//!
//! A plain mapping value (`jobCode`, `okta:jobCode`) is a lone attribute reference, so every
//! existing configuration means what it meant before. Argument counts are checked when the text
//! is parsed, so evaluation cannot fail: it yields a value or "no value".

use std::fmt;
use std::str::FromStr;

use crate::model::Source;

/// How deeply calls may nest. Parsing and evaluation recurse, so an unbounded depth would let a
/// hostile or mistyped configuration overflow the stack; no real mapping comes near this.
pub const MAX_DEPTH: usize = 32;

/// A parsed attribute expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// An IdP attribute by name; `source` set means it applies to that IdP only.
    Attribute {
        source: Option<Source>,
        name: String,
    },
    /// A string constant (a separator, a default, a Switch key).
    Literal(String),
    /// A function applied to its arguments (their number checked by [`parse`]).
    Call(Function, Vec<Expression>),
}

/// The functions an expression may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `Join(separator, value, ...)`: the non-empty values joined by the separator.
    Join,
    /// `Concat(value, ...)`: the non-empty values run together.
    Concat,
    /// `Lower(value)`.
    Lower,
    /// `Upper(value)`.
    Upper,
    /// `Coalesce(value, ...)`: the first non-empty value.
    Coalesce,
    /// `Switch(source, default, key, value, ...)`: Entra's argument order.
    Switch,
    /// `Trim(value)`: without leading and trailing whitespace.
    Trim,
}

impl Function {
    /// Every function, in the order error messages list them.
    pub const ALL: [Function; 7] = [
        Function::Join,
        Function::Concat,
        Function::Lower,
        Function::Upper,
        Function::Coalesce,
        Function::Switch,
        Function::Trim,
    ];

    /// The canonical spelling (what [`Expression`]'s `Display` writes).
    pub fn name(self) -> &'static str {
        match self {
            Function::Join => "Join",
            Function::Concat => "Concat",
            Function::Lower => "Lower",
            Function::Upper => "Upper",
            Function::Coalesce => "Coalesce",
            Function::Switch => "Switch",
            Function::Trim => "Trim",
        }
    }

    /// The function a name denotes, in any case (configuration is typed by people, and Entra's
    /// own expressions are case-insensitive).
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL
            .into_iter()
            .find(|function| function.name().eq_ignore_ascii_case(name))
    }

    /// Whether `count` arguments are acceptable.
    fn accepts(self, count: usize) -> bool {
        match self {
            Function::Join => count >= 2,
            Function::Concat | Function::Coalesce => count >= 1,
            Function::Lower | Function::Upper | Function::Trim => count == 1,
            // The source, the default, then at least one key/value pair.
            Function::Switch => count >= 4 && count.is_multiple_of(2),
        }
    }

    /// What the function takes, for error messages.
    fn expected_arguments(self) -> &'static str {
        match self {
            Function::Join => "a separator and at least one value",
            Function::Concat | Function::Coalesce => "at least 1 argument",
            Function::Lower | Function::Upper | Function::Trim => "1 argument",
            Function::Switch => "a source, a default and key/value pairs",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an expression text does not parse. Offsets count characters (not bytes) from the start
/// of the text, so they point at the right place in non-ASCII configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error("unexpected end of input at {offset}; expected {expected}")]
    UnexpectedEnd {
        offset: usize,
        expected: &'static str,
    },
    #[error("unexpected `{found}` at {offset}; expected {expected}")]
    UnexpectedCharacter {
        found: char,
        offset: usize,
        expected: &'static str,
    },
    #[error(
        "unknown function `{name}` at {offset}; expected one of {}",
        function_list()
    )]
    UnknownFunction { name: String, offset: usize },
    #[error("unknown attribute source `{prefix}` at {offset}; expected `okta:` or `entra:`")]
    UnknownSource { prefix: String, offset: usize },
    #[error("missing attribute name after `{prefix}:` at {offset}")]
    MissingAttributeName { prefix: String, offset: usize },
    #[error("unclosed string at {offset}")]
    UnclosedString { offset: usize },
    #[error("unknown escape `\\{escape}` at {offset}; only `\\\"` and `\\\\` are allowed")]
    UnknownEscape { escape: char, offset: usize },
    #[error("{function} at {offset} takes {}, got {got}", .function.expected_arguments())]
    ArgumentCount {
        function: Function,
        got: usize,
        offset: usize,
    },
    #[error("calls nested more than {MAX_DEPTH} deep at {offset}")]
    TooDeep { offset: usize },
    #[error("trailing input at {offset}")]
    TrailingInput { offset: usize },
}

impl ExpressionError {
    /// Where in the text (in characters) the problem is.
    pub fn offset(&self) -> usize {
        match self {
            ExpressionError::UnexpectedEnd { offset, .. }
            | ExpressionError::UnexpectedCharacter { offset, .. }
            | ExpressionError::UnknownFunction { offset, .. }
            | ExpressionError::UnknownSource { offset, .. }
            | ExpressionError::MissingAttributeName { offset, .. }
            | ExpressionError::UnclosedString { offset }
            | ExpressionError::UnknownEscape { offset, .. }
            | ExpressionError::ArgumentCount { offset, .. }
            | ExpressionError::TooDeep { offset }
            | ExpressionError::TrailingInput { offset } => *offset,
        }
    }
}

fn function_list() -> String {
    Function::ALL.map(Function::name).join(", ")
}

/// Parses an expression text (a whole mapping value).
pub fn parse(text: &str) -> Result<Expression, ExpressionError> {
    let mut cursor = Cursor::new(text);
    let expression = parse_expression(&mut cursor, 0)?;
    cursor.skip_whitespace();
    if cursor.at_end() {
        Ok(expression)
    } else {
        Err(ExpressionError::TrailingInput {
            offset: cursor.position(),
        })
    }
}

const EXPECTED_EXPRESSION: &str = "an attribute, a string or a function call";

fn parse_expression(cursor: &mut Cursor, depth: usize) -> Result<Expression, ExpressionError> {
    cursor.skip_whitespace();
    let start = cursor.position();
    match cursor.peek() {
        None => Err(ExpressionError::UnexpectedEnd {
            offset: start,
            expected: EXPECTED_EXPRESSION,
        }),
        Some('"') => cursor.string_literal().map(Expression::Literal),
        Some(c) if is_name_character(c) => {
            let attribute = cursor.attribute_reference()?;
            cursor.skip_whitespace();
            if cursor.peek() != Some('(') {
                return Ok(Expression::Attribute {
                    source: attribute.source,
                    name: attribute.name,
                });
            }
            let function = match attribute.source {
                None => Function::from_name(&attribute.name),
                // `okta:Lower(...)` is not a call of anything.
                Some(_) => None,
            }
            .ok_or_else(|| ExpressionError::UnknownFunction {
                name: attribute.to_string(),
                offset: start,
            })?;
            if depth >= MAX_DEPTH {
                return Err(ExpressionError::TooDeep { offset: start });
            }
            let arguments = parse_arguments(cursor, depth + 1)?;
            if !function.accepts(arguments.len()) {
                return Err(ExpressionError::ArgumentCount {
                    function,
                    got: arguments.len(),
                    offset: start,
                });
            }
            Ok(Expression::Call(function, arguments))
        }
        Some(found) => Err(ExpressionError::UnexpectedCharacter {
            found,
            offset: start,
            expected: EXPECTED_EXPRESSION,
        }),
    }
}

/// The parenthesised argument list, the cursor being on its `(`.
fn parse_arguments(cursor: &mut Cursor, depth: usize) -> Result<Vec<Expression>, ExpressionError> {
    cursor.require('(', "`(`")?;
    let mut arguments = Vec::new();
    cursor.skip_whitespace();
    if cursor.eat(')') {
        return Ok(arguments);
    }
    loop {
        arguments.push(parse_expression(cursor, depth)?);
        cursor.skip_whitespace();
        if cursor.eat(')') {
            return Ok(arguments);
        }
        cursor.require(',', "`,` or `)`")?;
    }
}

/// Whether `c` may appear in an attribute (or function) name.
pub(crate) fn is_name_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// An attribute as a mapping or a scoping rule names it: `name`, `okta:name`, `entra:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttributeReference {
    pub(crate) source: Option<Source>,
    pub(crate) name: String,
}

impl fmt::Display for AttributeReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_attribute(f, self.source, &self.name)
    }
}

fn write_attribute(f: &mut fmt::Formatter<'_>, source: Option<Source>, name: &str) -> fmt::Result {
    match source {
        Some(source) => write!(f, "{source}:{name}"),
        None => f.write_str(name),
    }
}

/// Writes `value` as a string literal that [`Cursor::string_literal`] reads back unchanged.
pub(crate) fn write_string_literal(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in value.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            other => write!(f, "{other}")?,
        }
    }
    f.write_str("\"")
}

/// A position in a text being parsed, by character, shared with the scoping-rule parser so the
/// two agree on what an attribute and a string are.
pub(crate) struct Cursor {
    characters: Vec<char>,
    position: usize,
}

impl Cursor {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            characters: text.chars().collect(),
            position: 0,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn at_end(&self) -> bool {
        self.position >= self.characters.len()
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.characters.get(self.position).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.peek();
        if next.is_some() {
            self.position += 1;
        }
        next
    }

    pub(crate) fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    /// Consumes `expected` if it is next.
    pub(crate) fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.position += 1;
        }
        found
    }

    /// Consumes `expected`, or says what was found instead (`description` names what was
    /// wanted).
    pub(crate) fn require(
        &mut self,
        expected: char,
        description: &'static str,
    ) -> Result<(), ExpressionError> {
        match self.peek() {
            Some(found) if found == expected => {
                self.position += 1;
                Ok(())
            }
            Some(found) => Err(ExpressionError::UnexpectedCharacter {
                found,
                offset: self.position,
                expected: description,
            }),
            None => Err(ExpressionError::UnexpectedEnd {
                offset: self.position,
                expected: description,
            }),
        }
    }

    /// The run of characters satisfying `accept` (possibly empty).
    pub(crate) fn take_while(&mut self, accept: impl Fn(char) -> bool) -> String {
        let mut taken = String::new();
        while let Some(c) = self.peek().filter(|c| accept(*c)) {
            taken.push(c);
            self.position += 1;
        }
        taken
    }

    /// `name`, `okta:name` or `entra:name` (the source prefix in any case).
    pub(crate) fn attribute_reference(&mut self) -> Result<AttributeReference, ExpressionError> {
        let start = self.position;
        let first = self.take_while(is_name_character);
        if first.is_empty() {
            return Err(match self.peek() {
                Some(found) => ExpressionError::UnexpectedCharacter {
                    found,
                    offset: start,
                    expected: "an attribute name",
                },
                None => ExpressionError::UnexpectedEnd {
                    offset: start,
                    expected: "an attribute name",
                },
            });
        }
        if !self.eat(':') {
            return Ok(AttributeReference {
                source: None,
                name: first,
            });
        }
        let source = if first.eq_ignore_ascii_case("okta") {
            Source::Okta
        } else if first.eq_ignore_ascii_case("entra") {
            Source::Entra
        } else {
            return Err(ExpressionError::UnknownSource {
                prefix: first,
                offset: start,
            });
        };
        let name_start = self.position;
        let name = self.take_while(is_name_character);
        if name.is_empty() {
            return Err(ExpressionError::MissingAttributeName {
                prefix: first,
                offset: name_start,
            });
        }
        Ok(AttributeReference {
            source: Some(source),
            name,
        })
    }

    /// A `"..."` literal, the cursor being on its opening quote.
    pub(crate) fn string_literal(&mut self) -> Result<String, ExpressionError> {
        let start = self.position;
        self.require('"', "a string")?;
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(ExpressionError::UnclosedString { offset: start }),
                Some('"') => return Ok(value),
                Some('\\') => {
                    let escape_offset = self.position - 1;
                    match self.bump() {
                        Some(c @ ('"' | '\\')) => value.push(c),
                        Some(escape) => {
                            return Err(ExpressionError::UnknownEscape {
                                escape,
                                offset: escape_offset,
                            })
                        }
                        None => return Err(ExpressionError::UnclosedString { offset: start }),
                    }
                }
                Some(c) => value.push(c),
            }
        }
    }
}

impl FromStr for Expression {
    type Err = ExpressionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

impl Expression {
    /// The expression's value for a user of `source` whose attributes `lookup` returns. `None`
    /// means "no value" (the caller clears the SCIM path); it is never `Some("")`. Attribute
    /// values are trimmed, and a missing, empty or whitespace-only one is no value, as in the
    /// plain mappings this generalises. Literals are kept as written (`" "` is a separator).
    pub fn evaluate(
        &self,
        source: Source,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        self.value(source, lookup)
    }

    /// Like [`Expression::evaluate`]; every `Some` it returns is non-empty, which the functions
    /// rely on to treat "empty" and "missing" alike.
    fn value(&self, source: Source, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let value = match self {
            Expression::Attribute {
                source: qualifier,
                name,
            } => {
                if qualifier.is_some_and(|qualifier| qualifier != source) {
                    return None;
                }
                lookup(name).map(|value| value.trim().to_string())
            }
            Expression::Literal(text) => Some(text.clone()),
            Expression::Call(function, arguments) => {
                evaluate_call(*function, arguments, source, lookup)
            }
        };
        value.filter(|value| !value.is_empty())
    }

    /// Whether the mapping touches users of `source` at all. Only a lone attribute qualified
    /// for the other IdP does not: an `entra:` mapping leaves Okta users' path alone rather than
    /// clearing it. A compound expression always applies (it may have a literal or another
    /// IdP's attribute to fall back on), so its "no value" does clear the path.
    pub fn applies_to(&self, source: Source) -> bool {
        match self {
            Expression::Attribute {
                source: Some(qualifier),
                ..
            } => *qualifier == source,
            _ => true,
        }
    }

    /// Every attribute the expression reads, each once, in order of appearance (the Graph
    /// reader must `$select` them).
    pub fn attributes(&self) -> Vec<(Option<Source>, &str)> {
        let mut attributes = Vec::new();
        self.collect_attributes(&mut attributes);
        attributes
    }

    fn collect_attributes<'e>(&'e self, attributes: &mut Vec<(Option<Source>, &'e str)>) {
        match self {
            Expression::Attribute { source, name } => {
                let attribute = (*source, name.as_str());
                if !attributes.contains(&attribute) {
                    attributes.push(attribute);
                }
            }
            Expression::Literal(_) => {}
            Expression::Call(_, arguments) => {
                for argument in arguments {
                    argument.collect_attributes(attributes);
                }
            }
        }
    }
}

/// One function's value. Written against whatever argument list it is given (slices and
/// `first`, not indexing), so a hand-built `Call` with the wrong arity yields "no value" instead
/// of panicking.
fn evaluate_call(
    function: Function,
    arguments: &[Expression],
    source: Source,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let value_of = |argument: &Expression| argument.value(source, lookup);
    let single = || arguments.first().and_then(value_of);
    match function {
        Function::Join => {
            let (separator, values) = arguments.split_first()?;
            // A separator with no value (an unset attribute) joins with nothing.
            let separator = value_of(separator).unwrap_or_default();
            let values: Vec<String> = values.iter().filter_map(value_of).collect();
            Some(values.join(separator.as_str()))
        }
        Function::Concat => Some(arguments.iter().filter_map(value_of).collect()),
        Function::Lower => single().map(|value| value.to_lowercase()),
        Function::Upper => single().map(|value| value.to_uppercase()),
        Function::Trim => single().map(|value| value.trim().to_string()),
        Function::Coalesce => arguments.iter().find_map(value_of),
        Function::Switch => {
            let (subject, rest) = arguments.split_first()?;
            let (default, pairs) = rest.split_first()?;
            // Exact comparison: a Switch maps codes (country, cost centre), which are not free
            // text, and Entra compares them exactly too.
            if let Some(subject) = value_of(subject) {
                for pair in pairs.chunks_exact(2) {
                    if let [key, value] = pair {
                        if value_of(key).as_deref() == Some(subject.as_str()) {
                            // A matched key with no value means "no value", not the default.
                            return value_of(value);
                        }
                    }
                }
            }
            value_of(default)
        }
    }
}

impl fmt::Display for Expression {
    /// The canonical text: canonical function names, `, ` between arguments, literals with
    /// only the necessary escapes. It parses back to the same expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expression::Attribute { source, name } => write_attribute(f, *source, name),
            Expression::Literal(text) => write_string_literal(f, text),
            Expression::Call(function, arguments) => {
                write!(f, "{function}(")?;
                for (index, argument) in arguments.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{argument}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// Parses `text` and evaluates it for a `source` user with `pairs` as attributes.
    fn eval(text: &str, source: Source, pairs: &[(&str, &str)]) -> Option<String> {
        let user = attributes(pairs);
        let lookup = |name: &str| user.get(name).cloned();
        parse(text)
            .unwrap_or_else(|error| panic!("{text}: {error}"))
            .evaluate(source, &lookup)
    }

    fn okta(text: &str, pairs: &[(&str, &str)]) -> Option<String> {
        eval(text, Source::Okta, pairs)
    }

    fn some(value: &str) -> Option<String> {
        Some(value.to_string())
    }

    fn attribute(source: Option<Source>, name: &str) -> Expression {
        Expression::Attribute {
            source,
            name: name.to_string(),
        }
    }

    fn literal(text: &str) -> Expression {
        Expression::Literal(text.to_string())
    }

    fn error(text: &str) -> ExpressionError {
        match parse(text) {
            Ok(expression) => panic!("{text} parsed as {expression:?}"),
            Err(error) => error,
        }
    }

    // Backward compatibility and attribute references.

    #[test]
    fn plain_mapping_values_parse_as_lone_attributes() {
        assert_eq!(parse("jobCode"), Ok(attribute(None, "jobCode")));
        assert_eq!(
            parse("okta:jobCode"),
            Ok(attribute(Some(Source::Okta), "jobCode"))
        );
        assert_eq!(
            parse("entra:department"),
            Ok(attribute(Some(Source::Entra), "department"))
        );
        assert_eq!(
            parse("extension_1a2b_cost-centre.code"),
            Ok(attribute(None, "extension_1a2b_cost-centre.code"))
        );
        assert_eq!(parse("  title  "), Ok(attribute(None, "title")));
    }

    #[test]
    fn a_function_name_without_parentheses_is_an_attribute() {
        assert_eq!(parse("Lower"), Ok(attribute(None, "Lower")));
        assert_eq!(
            parse("okta:switch"),
            Ok(attribute(Some(Source::Okta), "switch"))
        );
    }

    #[test]
    fn the_source_prefix_is_case_insensitive() {
        assert_eq!(parse("OKTA:x"), Ok(attribute(Some(Source::Okta), "x")));
        assert_eq!(parse("Entra:x"), Ok(attribute(Some(Source::Entra), "x")));
    }

    #[test]
    fn a_bare_attribute_applies_to_both_idps() {
        let pairs = [("department", "  Sales ")];
        assert_eq!(eval("department", Source::Okta, &pairs), some("Sales"));
        assert_eq!(eval("department", Source::Entra, &pairs), some("Sales"));
    }

    #[test]
    fn a_qualified_attribute_reads_only_its_idp() {
        let pairs = [("department", "Sales")];
        assert_eq!(eval("okta:department", Source::Okta, &pairs), some("Sales"));
        assert_eq!(eval("okta:department", Source::Entra, &pairs), None);
        assert_eq!(
            eval("entra:department", Source::Entra, &pairs),
            some("Sales")
        );
        assert_eq!(eval("entra:department", Source::Okta, &pairs), None);
    }

    #[test]
    fn missing_empty_and_blank_attributes_are_no_value() {
        let pairs = [("empty", ""), ("blank", " \t ")];
        assert_eq!(okta("absent", &pairs), None);
        assert_eq!(okta("empty", &pairs), None);
        assert_eq!(okta("blank", &pairs), None);
    }

    #[test]
    fn only_a_lone_attribute_for_the_other_idp_does_not_apply() {
        let applies = |text: &str, source| parse(text).map(|e| e.applies_to(source));
        assert_eq!(applies("entra:mail", Source::Okta), Ok(false));
        assert_eq!(applies("entra:mail", Source::Entra), Ok(true));
        assert_eq!(applies("okta:email", Source::Entra), Ok(false));
        assert_eq!(applies("email", Source::Entra), Ok(true));
        assert_eq!(applies("\"fixed\"", Source::Okta), Ok(true));
        assert_eq!(applies("Lower(entra:mail)", Source::Okta), Ok(true));
    }

    // Literals.

    #[test]
    fn a_literal_is_its_text() {
        assert_eq!(okta("\"Sales\"", &[]), some("Sales"));
        assert_eq!(
            okta(r#""say \"hi\" \\ bye""#, &[]),
            some(r#"say "hi" \ bye"#)
        );
        assert_eq!(okta("\"Zürich ✓\"", &[]), some("Zürich ✓"));
    }

    #[test]
    fn an_empty_literal_is_no_value() {
        assert_eq!(okta("\"\"", &[]), None);
    }

    // Functions.

    #[test]
    fn join_skips_missing_values() {
        let pairs = [("givenName", "Ada"), ("familyName", "Lovelace")];
        assert_eq!(
            okta("Join(\" \", givenName, familyName)", &pairs),
            some("Ada Lovelace")
        );
        assert_eq!(
            okta(
                "Join(\" \", givenName, familyName)",
                &[("givenName", "Ada")]
            ),
            some("Ada")
        );
        assert_eq!(
            okta(
                "Join(\" \", givenName, familyName)",
                &[("familyName", "Lovelace")]
            ),
            some("Lovelace")
        );
        assert_eq!(okta("Join(\" \", givenName, familyName)", &[]), None);
    }

    #[test]
    fn join_with_a_missing_separator_runs_values_together() {
        let pairs = [("a", "x"), ("b", "y")];
        assert_eq!(okta("Join(separator, a, b)", &pairs), some("xy"));
        assert_eq!(okta("Join(\"\", a, b)", &pairs), some("xy"));
    }

    #[test]
    fn join_takes_any_expression_as_separator() {
        let pairs = [("a", "x"), ("b", "y"), ("sep", "-")];
        assert_eq!(okta("Join(sep, a, b)", &pairs), some("x-y"));
        assert_eq!(
            okta("Join(Upper(\"/\"), a, \"z\", b)", &pairs),
            some("x/z/y")
        );
    }

    #[test]
    fn concat_runs_non_empty_values_together() {
        let pairs = [("a", "x"), ("b", " "), ("c", "z")];
        assert_eq!(okta("Concat(a, b, c, \"!\")", &pairs), some("xz!"));
        assert_eq!(okta("Concat(a)", &pairs), some("x"));
        assert_eq!(okta("Concat(missing, b)", &pairs), None);
    }

    #[test]
    fn lower_and_upper_change_case_including_non_ascii() {
        let pairs = [("name", "Ünïcode Ä")];
        assert_eq!(okta("Lower(name)", &pairs), some("ünïcode ä"));
        assert_eq!(okta("Upper(name)", &pairs), some("ÜNÏCODE Ä"));
        assert_eq!(okta("Lower(missing)", &pairs), None);
        assert_eq!(okta("Upper(missing)", &pairs), None);
    }

    #[test]
    fn trim_removes_surrounding_whitespace_from_literals() {
        assert_eq!(okta("Trim(\"  a b  \")", &[]), some("a b"));
        assert_eq!(okta("Trim(\"   \")", &[]), None);
        assert_eq!(okta("Trim(missing)", &[]), None);
    }

    #[test]
    fn coalesce_takes_the_first_non_empty_value() {
        let pairs = [("blank", "  "), ("second", "two"), ("third", "three")];
        assert_eq!(
            okta("Coalesce(missing, blank, second, third)", &pairs),
            some("two")
        );
        assert_eq!(
            okta("Coalesce(missing, \"fallback\")", &pairs),
            some("fallback")
        );
        assert_eq!(okta("Coalesce(missing, blank)", &pairs), None);
    }

    #[test]
    fn switch_maps_a_matching_key() {
        let text = "Switch(country, \"Other\", \"US\", \"United States\", \"CA\", \"Canada\")";
        assert_eq!(okta(text, &[("country", "CA")]), some("Canada"));
        assert_eq!(okta(text, &[("country", " US ")]), some("United States"));
    }

    #[test]
    fn switch_falls_back_to_the_default() {
        let text = "Switch(country, \"Other\", \"US\", \"United States\")";
        assert_eq!(okta(text, &[("country", "FR")]), some("Other"));
        assert_eq!(okta(text, &[]), some("Other"));
        // Keys compare exactly: codes are not free text.
        assert_eq!(okta(text, &[("country", "us")]), some("Other"));
        assert_eq!(
            okta("Switch(country, fallback, \"US\", \"United States\")", &[]),
            None
        );
    }

    #[test]
    fn switch_with_a_matched_empty_value_is_no_value_not_the_default() {
        let text = "Switch(country, \"Other\", \"XX\", \"\")";
        assert_eq!(okta(text, &[("country", "XX")]), None);
    }

    #[test]
    fn switch_takes_the_first_matching_pair() {
        let text = "Switch(x, \"d\", \"a\", \"first\", \"a\", \"second\")";
        assert_eq!(okta(text, &[("x", "a")]), some("first"));
    }

    #[test]
    fn function_names_are_case_insensitive() {
        let pairs = [("a", "X")];
        assert_eq!(okta("lower(a)", &pairs), some("x"));
        assert_eq!(okta("LOWER(a)", &pairs), some("x"));
        assert_eq!(okta("cOaLeScE(a)", &pairs), some("X"));
        assert_eq!(
            parse("upper(a)").map(|e| e.to_string()),
            Ok("Upper(a)".to_string())
        );
    }

    #[test]
    fn whitespace_is_allowed_between_tokens() {
        let pairs = [("a", "x"), ("b", "y")];
        assert_eq!(okta(" Join ( \"-\" , a ,\tb\n) ", &pairs), some("x-y"));
        assert_eq!(okta("Concat(a,b)", &pairs), some("xy"));
    }

    // Nesting and qualification inside calls.

    #[test]
    fn nested_calls_pick_the_value_for_the_user_s_idp() {
        let text = "Lower(Coalesce(okta:email, entra:mail))";
        let pairs = [("email", "Ada@Example.com"), ("mail", "Other@Example.com")];
        assert_eq!(eval(text, Source::Okta, &pairs), some("ada@example.com"));
        assert_eq!(eval(text, Source::Entra, &pairs), some("other@example.com"));
        assert_eq!(eval(text, Source::Entra, &[("email", "x@y")]), None);
    }

    #[test]
    fn deep_but_allowed_nesting_evaluates() {
        let text = format!("{}a{}", "Upper(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(okta(&text, &[("a", "x")]), some("X"));
    }

    #[test]
    fn attributes_lists_every_reference_once_in_order() {
        let expression = parse(
            "Join(sep, Lower(okta:email), entra:mail, okta:email, \"lit\", Switch(c, d, \"k\", sep))",
        );
        assert_eq!(
            expression.as_ref().map(|e| e.attributes()),
            Ok(vec![
                (None, "sep"),
                (Some(Source::Okta), "email"),
                (Some(Source::Entra), "mail"),
                (None, "c"),
                (None, "d"),
            ])
        );
        assert_eq!(parse("\"x\"").map(|e| e.attributes().is_empty()), Ok(true));
    }

    // Parse errors: one test per class, checking the message too.

    #[test]
    fn unknown_function_lists_the_known_ones() {
        let problem = error("Lowr(a)");
        assert_eq!(
            problem,
            ExpressionError::UnknownFunction {
                name: "Lowr".into(),
                offset: 0
            }
        );
        assert_eq!(
            problem.to_string(),
            "unknown function `Lowr` at 0; expected one of Join, Concat, Lower, Upper, Coalesce, Switch, Trim"
        );
        assert_eq!(
            error("Lower(okta:Upper(a))"),
            ExpressionError::UnknownFunction {
                name: "okta:Upper".into(),
                offset: 6
            }
        );
    }

    #[test]
    fn wrong_argument_counts_are_rejected_at_parse_time() {
        let problem = error("Lower(a, b)");
        assert_eq!(
            problem,
            ExpressionError::ArgumentCount {
                function: Function::Lower,
                got: 2,
                offset: 0
            }
        );
        assert_eq!(problem.to_string(), "Lower at 0 takes 1 argument, got 2");
        assert_eq!(error("Upper()").offset(), 0);
        assert_eq!(error("Trim(a, b)").offset(), 0);
        assert_eq!(
            error("Concat()").to_string(),
            "Concat at 0 takes at least 1 argument, got 0"
        );
        assert_eq!(
            error("Coalesce()").to_string(),
            "Coalesce at 0 takes at least 1 argument, got 0"
        );
        assert_eq!(
            error("x(Join(\",\"))").to_string(),
            "unknown function `x` at 0; expected one of Join, Concat, Lower, Upper, Coalesce, Switch, Trim"
        );
        assert_eq!(
            error("Lower(Join(\",\"))").to_string(),
            "Join at 6 takes a separator and at least one value, got 1"
        );
    }

    #[test]
    fn switch_needs_a_source_a_default_and_whole_pairs() {
        for (text, got) in [
            ("Switch(a)", 1),
            ("Switch(a, \"d\")", 2),
            ("Switch(a, \"d\", \"k\")", 3),
            ("Switch(a, \"d\", \"k\", \"v\", \"k2\")", 5),
        ] {
            let problem = error(text);
            assert_eq!(
                problem,
                ExpressionError::ArgumentCount {
                    function: Function::Switch,
                    got,
                    offset: 0
                },
                "{text}"
            );
            assert_eq!(
                problem.to_string(),
                format!("Switch at 0 takes a source, a default and key/value pairs, got {got}")
            );
        }
    }

    #[test]
    fn unclosed_strings_point_at_the_opening_quote() {
        let problem = error("Join(\"abc, a)");
        assert_eq!(problem, ExpressionError::UnclosedString { offset: 5 });
        assert_eq!(problem.to_string(), "unclosed string at 5");
        assert_eq!(
            error("\"ends in escape\\"),
            ExpressionError::UnclosedString { offset: 0 }
        );
    }

    #[test]
    fn unknown_escapes_are_rejected() {
        let problem = error(r#""a\nb""#);
        assert_eq!(
            problem,
            ExpressionError::UnknownEscape {
                escape: 'n',
                offset: 2
            }
        );
        assert_eq!(
            problem.to_string(),
            r#"unknown escape `\n` at 2; only `\"` and `\\` are allowed"#
        );
    }

    #[test]
    fn trailing_input_is_rejected() {
        let problem = error("Lower(a) Upper(b)");
        assert_eq!(problem, ExpressionError::TrailingInput { offset: 9 });
        assert_eq!(problem.to_string(), "trailing input at 9");
        assert_eq!(error("a b"), ExpressionError::TrailingInput { offset: 2 });
        assert_eq!(
            error("Lower(a))"),
            ExpressionError::TrailingInput { offset: 8 }
        );
        assert_eq!(
            error("okta:a:b"),
            ExpressionError::TrailingInput { offset: 6 }
        );
    }

    #[test]
    fn unknown_sources_and_missing_names_are_rejected() {
        let problem = error("google:mail");
        assert_eq!(
            problem,
            ExpressionError::UnknownSource {
                prefix: "google".into(),
                offset: 0
            }
        );
        assert_eq!(
            problem.to_string(),
            "unknown attribute source `google` at 0; expected `okta:` or `entra:`"
        );
        let problem = error("Lower(okta:)");
        assert_eq!(
            problem,
            ExpressionError::MissingAttributeName {
                prefix: "okta".into(),
                offset: 11
            }
        );
        assert_eq!(
            problem.to_string(),
            "missing attribute name after `okta:` at 11"
        );
    }

    #[test]
    fn empty_input_and_missing_arguments_are_unexpected_ends() {
        let problem = error("");
        assert_eq!(
            problem,
            ExpressionError::UnexpectedEnd {
                offset: 0,
                expected: EXPECTED_EXPRESSION
            }
        );
        assert_eq!(
            problem.to_string(),
            "unexpected end of input at 0; expected an attribute, a string or a function call"
        );
        assert_eq!(error("   ").offset(), 3);
        assert_eq!(
            error("Lower(a"),
            ExpressionError::UnexpectedEnd {
                offset: 7,
                expected: "`,` or `)`"
            }
        );
        assert_eq!(
            error("Concat(a,"),
            ExpressionError::UnexpectedEnd {
                offset: 9,
                expected: EXPECTED_EXPRESSION
            }
        );
    }

    #[test]
    fn stray_characters_are_unexpected() {
        let problem = error("Concat(a, , b)");
        assert_eq!(
            problem,
            ExpressionError::UnexpectedCharacter {
                found: ',',
                offset: 10,
                expected: EXPECTED_EXPRESSION
            }
        );
        assert_eq!(
            problem.to_string(),
            "unexpected `,` at 10; expected an attribute, a string or a function call"
        );
        assert_eq!(
            error("Concat(a; b)"),
            ExpressionError::UnexpectedCharacter {
                found: ';',
                offset: 8,
                expected: "`,` or `)`"
            }
        );
        assert_eq!(error("(a)").offset(), 0);
        assert_eq!(error("$x").offset(), 0);
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        assert_eq!(
            error("\"ü\" x"),
            ExpressionError::TrailingInput { offset: 4 }
        );
        assert_eq!(error("Concat(\"ü\", ü)").offset(), 12);
    }

    #[test]
    fn nesting_beyond_the_limit_is_rejected() {
        let depth = MAX_DEPTH + 1;
        let text = format!("{}a{}", "Lower(".repeat(depth), ")".repeat(depth));
        let problem = error(&text);
        assert_eq!(
            problem,
            ExpressionError::TooDeep {
                offset: MAX_DEPTH * "Lower(".len()
            }
        );
        assert_eq!(
            problem.to_string(),
            format!(
                "calls nested more than {MAX_DEPTH} deep at {}",
                MAX_DEPTH * 6
            )
        );
        // Far beyond the limit: an error, not a stack overflow.
        let text = "Lower(".repeat(100_000);
        assert!(matches!(error(&text), ExpressionError::TooDeep { .. }));
    }

    // Display.

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (text, canonical) in [
            ("jobCode", "jobCode"),
            ("OKTA:jobCode", "okta:jobCode"),
            ("entra:department", "entra:department"),
            (r#""a \"q\" \\ b""#, r#""a \"q\" \\ b""#),
            (
                "join( \" \" ,givenName,familyName )",
                "Join(\" \", givenName, familyName)",
            ),
            (
                "lower(coalesce(okta:email,entra:mail))",
                "Lower(Coalesce(okta:email, entra:mail))",
            ),
            (
                "SWITCH(c,\"d\",\"k\",\"v\")",
                "Switch(c, \"d\", \"k\", \"v\")",
            ),
            ("concat(a,\"\",b)", "Concat(a, \"\", b)"),
            ("trim(upper(x))", "Trim(Upper(x))"),
        ] {
            let expression = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(expression.to_string(), canonical, "{text}");
            assert_eq!(parse(canonical), Ok(expression), "{text}");
        }
    }

    #[test]
    fn from_str_is_parse() {
        assert_eq!("Lower(a)".parse::<Expression>(), parse("Lower(a)"));
    }

    // Totality.

    /// Builds texts from fragments of the language, valid and not, so many of them parse: every
    /// one that parses must evaluate without panicking, for either IdP and whatever the user's
    /// attributes, and must survive a Display round trip.
    #[test]
    fn any_parsed_expression_evaluates_without_panicking() {
        const FRAGMENTS: [&str; 24] = [
            "Join(",
            "Concat(",
            "Lower(",
            "Upper(",
            "Coalesce(",
            "Switch(",
            "Trim(",
            "a",
            "b",
            "okta:a",
            "entra:b",
            "\"\"",
            "\" \"",
            "\"x\"",
            "\"a\"",
            "\"ü\\\"\"",
            ",",
            ", ",
            ")",
            ")",
            "  ",
            "\"",
            "(",
            "okta:",
        ];
        let users = [
            attributes(&[]),
            attributes(&[("a", "a"), ("b", "  ")]),
            attributes(&[("a", " x "), ("b", "ÄÖ")]),
        ];
        let mut random = fastrand::Rng::with_seed(0x5c1a);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let length = random.usize(1..12);
            let text: String = (0..length)
                .map(|_| FRAGMENTS[random.usize(..FRAGMENTS.len())])
                .collect();
            let Ok(expression) = parse(&text) else {
                continue;
            };
            parsed += 1;
            assert_eq!(
                parse(&expression.to_string()).as_ref(),
                Ok(&expression),
                "{text}"
            );
            for user in &users {
                let lookup = |name: &str| user.get(name).cloned();
                for source in [Source::Okta, Source::Entra] {
                    let value = expression.evaluate(source, &lookup);
                    assert_ne!(value.as_deref(), Some(""), "{text}");
                    let _ = expression.applies_to(source);
                }
            }
            let _ = expression.attributes();
        }
        assert!(parsed > 500, "only {parsed} generated texts parsed");
    }

    #[test]
    fn hand_built_calls_with_the_wrong_arity_are_no_value() {
        let lookup = |_: &str| Some("x".to_string());
        for function in Function::ALL {
            let empty = Expression::Call(function, Vec::new());
            assert_eq!(empty.evaluate(Source::Okta, &lookup), None, "{function}");
        }
        let odd_switch = Expression::Call(
            Function::Switch,
            vec![attribute(None, "a"), literal("d"), literal("x")],
        );
        assert_eq!(odd_switch.evaluate(Source::Okta, &lookup), some("d"));
    }
}
