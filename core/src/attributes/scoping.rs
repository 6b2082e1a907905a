//! Attribute scoping rules: which users are in scope by their IdP attributes, alongside app and
//! group scope (Entra's "attribute scoping filters").
//!
//! ```text
//! rule      := attribute operator operand
//! attribute := [ ("okta" | "entra") ":" ] name          (as in attribute expressions)
//! operator  := equals | not_equals | starts_with        then a string: "Sales"
//!            | in | not_in                               then a list:   ("US", "CA")
//! ```
//!
//! Operators are case-insensitive, and so is every comparison: the values are typed by people
//! into the IdP (`Sales`, `sales`, `SALES` are the same department to an administrator), and a
//! user silently dropped out of scope over a capital letter would be deprovisioned.

use std::fmt;
use std::str::FromStr;

use super::expression::{
    is_name_character, write_string_literal, AttributeReference, Cursor, ExpressionError,
};
use crate::model::Source;

/// How a rule compares the user's attribute with its operand(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleOperator {
    Equals,
    NotEquals,
    In,
    NotIn,
    StartsWith,
}

impl RuleOperator {
    /// Every operator, in the order error messages list them.
    pub const ALL: [RuleOperator; 5] = [
        RuleOperator::Equals,
        RuleOperator::NotEquals,
        RuleOperator::In,
        RuleOperator::NotIn,
        RuleOperator::StartsWith,
    ];

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleOperator::Equals => "equals",
            RuleOperator::NotEquals => "not_equals",
            RuleOperator::In => "in",
            RuleOperator::NotIn => "not_in",
            RuleOperator::StartsWith => "starts_with",
        }
    }

    /// The operator a word denotes, in any case.
    pub fn from_word(word: &str) -> Option<RuleOperator> {
        RuleOperator::ALL
            .into_iter()
            .find(|operator| operator.as_str().eq_ignore_ascii_case(word))
    }

    /// Whether the operand is a list (`in`, `not_in`) rather than one string.
    pub fn takes_list(self) -> bool {
        matches!(self, RuleOperator::In | RuleOperator::NotIn)
    }

    /// Whether a user without the attribute satisfies the rule. The negative operators hold
    /// (a user with no country is "not in (US, CA)"), the positive ones do not (nor is that user
    /// "in" them). Entra's scoping filters treat a missing value much the same way.
    fn admits_missing(self) -> bool {
        matches!(self, RuleOperator::NotEquals | RuleOperator::NotIn)
    }
}

impl fmt::Display for RuleOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed rule: `department equals "Sales"`, `okta:countryCode in ("US", "CA")`.
///
/// The fields are private so that a rule always has the operand shape its operator needs (one
/// non-empty string, or a non-empty list of them): build one with [`parse_rule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopingRule {
    attribute: AttributeReference,
    operator: RuleOperator,
    /// As written, for Display; one for the single-string operators.
    operands: Vec<String>,
    /// The operands lowercased once, for comparison.
    folded_operands: Vec<String>,
}

impl ScopingRule {
    /// The IdP the rule is for, if it is qualified (`okta:`, `entra:`).
    pub fn source(&self) -> Option<Source> {
        self.attribute.source
    }

    /// The attribute name, without its qualifier.
    pub fn attribute(&self) -> &str {
        &self.attribute.name
    }

    pub fn operator(&self) -> RuleOperator {
        self.operator
    }

    /// The operand(s) as written: one string, or the list for `in` / `not_in`.
    pub fn operands(&self) -> &[String] {
        &self.operands
    }

    /// Whether the rule is evaluated for users of `source`: not when it is qualified for the
    /// other IdP.
    pub fn applies_to(&self, source: Source) -> bool {
        self.attribute
            .source
            .is_none_or(|qualifier| qualifier == source)
    }

    /// Whether a user whose attributes `lookup` returns satisfies the rule (regardless of
    /// [`ScopingRule::applies_to`]). The value is trimmed; an empty or whitespace-only one is
    /// missing.
    pub fn matches(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        let value = lookup(&self.attribute.name)
            .map(|value| value.trim().to_lowercase())
            .filter(|value| !value.is_empty());
        let Some(value) = value else {
            return self.operator.admits_missing();
        };
        let equals_any = || self.folded_operands.contains(&value);
        match self.operator {
            RuleOperator::Equals | RuleOperator::In => equals_any(),
            RuleOperator::NotEquals | RuleOperator::NotIn => !equals_any(),
            RuleOperator::StartsWith => self
                .folded_operands
                .iter()
                .any(|operand| value.starts_with(operand.as_str())),
        }
    }
}

impl fmt::Display for ScopingRule {
    /// The canonical text (lowercase operator, `, ` in lists); it parses back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.attribute, self.operator)?;
        if !self.operator.takes_list() {
            if let Some(operand) = self.operands.first() {
                return write_string_literal(f, operand);
            }
        }
        f.write_str("(")?;
        for (index, operand) in self.operands.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write_string_literal(f, operand)?;
        }
        f.write_str(")")
    }
}

impl FromStr for ScopingRule {
    type Err = ScopingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_rule(text)
    }
}

/// Why a rule text does not parse: the rule, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scoping rule `{rule}`: {problem}")]
pub struct ScopingError {
    pub rule: String,
    pub problem: ScopingProblem,
}

/// What is wrong with a rule. Offsets count characters from the start of the rule text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopingProblem {
    /// The attribute or a string literal is malformed (the same rules as in expressions).
    #[error(transparent)]
    Syntax(#[from] ExpressionError),
    #[error("missing operator at {offset}; expected one of {}", operator_list())]
    MissingOperator { offset: usize },
    #[error(
        "unknown operator `{operator}` at {offset}; expected one of {}",
        operator_list()
    )]
    UnknownOperator { operator: String, offset: usize },
    #[error("`{operator}` at {offset} takes a string such as \"Sales\"")]
    ExpectedString {
        operator: RuleOperator,
        offset: usize,
    },
    #[error("`{operator}` at {offset} takes a list such as (\"US\", \"CA\")")]
    ExpectedList {
        operator: RuleOperator,
        offset: usize,
    },
    #[error("empty list at {offset}; `in` and `not_in` need at least one value")]
    EmptyList { offset: usize },
    #[error("empty string at {offset}; a missing value is tested with `not_equals` or `not_in`")]
    EmptyOperand { offset: usize },
    #[error("trailing input at {offset}")]
    TrailingInput { offset: usize },
}

fn operator_list() -> String {
    RuleOperator::ALL.map(RuleOperator::as_str).join(", ")
}

/// Parses one rule text.
pub fn parse_rule(text: &str) -> Result<ScopingRule, ScopingError> {
    parse_rule_parts(text).map_err(|problem| ScopingError {
        rule: text.to_string(),
        problem,
    })
}

fn parse_rule_parts(text: &str) -> Result<ScopingRule, ScopingProblem> {
    let mut cursor = Cursor::new(text);
    cursor.skip_whitespace();
    let attribute = cursor.attribute_reference()?;
    cursor.skip_whitespace();
    let operator_offset = cursor.position();
    // Operator words are made of name characters, so `department-equals` would have been
    // read as one attribute name: whitespace is what separates them.
    let word = cursor.take_while(is_name_character);
    if word.is_empty() {
        return Err(ScopingProblem::MissingOperator {
            offset: operator_offset,
        });
    }
    let Some(operator) = RuleOperator::from_word(&word) else {
        return Err(ScopingProblem::UnknownOperator {
            operator: word,
            offset: operator_offset,
        });
    };
    cursor.skip_whitespace();
    let operands = if operator.takes_list() {
        parse_list(&mut cursor, operator)?
    } else {
        if cursor.peek() != Some('"') {
            return Err(ScopingProblem::ExpectedString {
                operator,
                offset: cursor.position(),
            });
        }
        vec![parse_operand(&mut cursor)?]
    };
    cursor.skip_whitespace();
    if !cursor.at_end() {
        return Err(ScopingProblem::TrailingInput {
            offset: cursor.position(),
        });
    }
    let folded_operands = operands.iter().map(|o| o.to_lowercase()).collect();
    Ok(ScopingRule {
        attribute,
        operator,
        operands,
        folded_operands,
    })
}

/// `("US", "CA")`, the cursor being on the `(` if the rule is well formed.
fn parse_list(cursor: &mut Cursor, operator: RuleOperator) -> Result<Vec<String>, ScopingProblem> {
    let start = cursor.position();
    if !cursor.eat('(') {
        return Err(ScopingProblem::ExpectedList {
            operator,
            offset: start,
        });
    }
    cursor.skip_whitespace();
    if cursor.eat(')') {
        return Err(ScopingProblem::EmptyList { offset: start });
    }
    let mut operands = Vec::new();
    loop {
        cursor.skip_whitespace();
        operands.push(parse_operand(cursor)?);
        cursor.skip_whitespace();
        if cursor.eat(')') {
            return Ok(operands);
        }
        cursor.require(',', "`,` or `)`")?;
    }
}

/// One non-empty string literal. An empty one is refused because it could never match a value
/// (values are trimmed, and an empty one is missing), so it is surely a mistake.
fn parse_operand(cursor: &mut Cursor) -> Result<String, ScopingProblem> {
    let offset = cursor.position();
    let operand = cursor.string_literal()?;
    if operand.is_empty() {
        return Err(ScopingProblem::EmptyOperand { offset });
    }
    Ok(operand)
}

/// A set of rules combined with "all of" or "any of".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopingRules {
    match_all: bool,
    rules: Vec<ScopingRule>,
}

impl Default for ScopingRules {
    /// No rules: everyone is admitted.
    fn default() -> Self {
        Self::new(Vec::new(), true)
    }
}

impl ScopingRules {
    /// `match_all`: every rule must hold ("all of"); otherwise one suffices ("any of").
    pub fn new(rules: Vec<ScopingRule>, match_all: bool) -> Self {
        Self { match_all, rules }
    }

    /// Parses every rule text; the first bad one is the error.
    pub fn parse<I>(texts: I, match_all: bool) -> Result<Self, ScopingError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let rules = texts
            .into_iter()
            .map(|text| parse_rule(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(rules, match_all))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn match_all(&self) -> bool {
        self.match_all
    }

    pub fn rules(&self) -> &[ScopingRule] {
        &self.rules
    }

    /// Whether a user of `source` with the attributes `lookup` returns is in scope. No rules
    /// admit everyone. Rules qualified for the other IdP are not evaluated: they neither block
    /// ("all of") nor count ("any of"), so a configuration shared by an Okta and an Entra
    /// relay scopes each by its own rules; if no rule is for this IdP, everyone is admitted.
    pub fn admits(&self, source: Source, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        let mut applicable = self
            .rules
            .iter()
            .filter(|rule| rule.applies_to(source))
            .peekable();
        if applicable.peek().is_none() {
            return true;
        }
        if self.match_all {
            applicable.all(|rule| rule.matches(lookup))
        } else {
            applicable.any(|rule| rule.matches(lookup))
        }
    }

    /// Every attribute the rules read, each once, in order (the Graph reader must `$select`
    /// them).
    pub fn attributes(&self) -> Vec<(Option<Source>, &str)> {
        let mut attributes = Vec::new();
        for rule in &self.rules {
            let attribute = (rule.source(), rule.attribute());
            if !attributes.contains(&attribute) {
                attributes.push(attribute);
            }
        }
        attributes
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rule(text: &str) -> ScopingRule {
        parse_rule(text).unwrap_or_else(|error| panic!("{error}"))
    }

    fn rules(texts: &[&str], match_all: bool) -> ScopingRules {
        ScopingRules::parse(texts, match_all).unwrap_or_else(|error| panic!("{error}"))
    }

    fn user(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn matches(text: &str, pairs: &[(&str, &str)]) -> bool {
        let user = user(pairs);
        rule(text).matches(&|name: &str| user.get(name).cloned())
    }

    fn admits(rules: &ScopingRules, source: Source, pairs: &[(&str, &str)]) -> bool {
        let user = user(pairs);
        rules.admits(source, &|name: &str| user.get(name).cloned())
    }

    fn problem(text: &str) -> ScopingProblem {
        match parse_rule(text) {
            Ok(rule) => panic!("{text} parsed as {rule:?}"),
            Err(error) => {
                assert_eq!(error.rule, text);
                error.problem
            }
        }
    }

    // Parsing.

    #[test]
    fn parses_each_part_of_a_rule() {
        let parsed = rule("okta:countryCode in (\"US\", \"CA\")");
        assert_eq!(parsed.source(), Some(Source::Okta));
        assert_eq!(parsed.attribute(), "countryCode");
        assert_eq!(parsed.operator(), RuleOperator::In);
        assert_eq!(parsed.operands(), ["US", "CA"]);
        let parsed = rule("  department   EQUALS\t\"Sales\"  ");
        assert_eq!(parsed.source(), None);
        assert_eq!(parsed.attribute(), "department");
        assert_eq!(parsed.operator(), RuleOperator::Equals);
        assert_eq!(parsed.operands(), ["Sales"]);
    }

    #[test]
    fn operators_are_case_insensitive() {
        for (word, operator) in [
            ("equals", RuleOperator::Equals),
            ("Not_Equals", RuleOperator::NotEquals),
            ("IN", RuleOperator::In),
            ("not_IN", RuleOperator::NotIn),
            ("Starts_With", RuleOperator::StartsWith),
        ] {
            let operand = if operator.takes_list() {
                "(\"x\")"
            } else {
                "\"x\""
            };
            assert_eq!(rule(&format!("a {word} {operand}")).operator(), operator);
        }
    }

    #[test]
    fn lists_allow_free_whitespace_and_one_item() {
        assert_eq!(rule("c in(\"US\")").operands(), ["US"]);
        assert_eq!(
            rule("c not_in (  \"US\" ,\"CA\"  )").operands(),
            ["US", "CA"]
        );
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (text, canonical) in [
            ("department EQUALS \"Sales\"", "department equals \"Sales\""),
            ("Entra:c in(\"US\",\"CA\")", "entra:c in (\"US\", \"CA\")"),
            (
                "okta:t starts_with \"Eng \\\"x\\\"\"",
                "okta:t starts_with \"Eng \\\"x\\\"\"",
            ),
            ("x not_in (\"\\\\\")", "x not_in (\"\\\\\")"),
            ("x not_equals \"y\"", "x not_equals \"y\""),
        ] {
            let parsed = rule(text);
            assert_eq!(parsed.to_string(), canonical);
            assert_eq!(parse_rule(canonical), Ok(parsed));
        }
    }

    #[test]
    fn from_str_is_parse_rule() {
        assert_eq!(
            "a equals \"b\"".parse::<ScopingRule>(),
            parse_rule("a equals \"b\"")
        );
    }

    // Parse errors.

    #[test]
    fn a_missing_operator_is_reported() {
        assert_eq!(
            problem("department"),
            ScopingProblem::MissingOperator { offset: 10 }
        );
        assert_eq!(
            parse_rule("department \"Sales\"").map_err(|e| e.to_string()),
            Err(
                "scoping rule `department \"Sales\"`: missing operator at 11; expected one of \
                 equals, not_equals, in, not_in, starts_with"
                    .to_string()
            )
        );
    }

    #[test]
    fn an_unknown_operator_is_named() {
        assert_eq!(
            problem("department eq \"Sales\""),
            ScopingProblem::UnknownOperator {
                operator: "eq".into(),
                offset: 11
            }
        );
        assert_eq!(
            parse_rule("department eq \"Sales\"").map_err(|e| e.to_string()),
            Err(
                "scoping rule `department eq \"Sales\"`: unknown operator `eq` at 11; expected \
                 one of equals, not_equals, in, not_in, starts_with"
                    .to_string()
            )
        );
        // Entra's spelling with a space is not accepted: `not` is the unknown operator.
        assert_eq!(
            problem("a NOT EQUALS \"b\""),
            ScopingProblem::UnknownOperator {
                operator: "NOT".into(),
                offset: 2
            }
        );
    }

    #[test]
    fn single_string_operators_refuse_lists() {
        assert_eq!(
            problem("department equals (\"Sales\")"),
            ScopingProblem::ExpectedString {
                operator: RuleOperator::Equals,
                offset: 18
            }
        );
        assert_eq!(
            problem("department starts_with"),
            ScopingProblem::ExpectedString {
                operator: RuleOperator::StartsWith,
                offset: 22
            }
        );
        assert_eq!(
            parse_rule("d not_equals Sales").map_err(|e| e.to_string()),
            Err(
                "scoping rule `d not_equals Sales`: `not_equals` at 13 takes a string such as \
                 \"Sales\""
                    .to_string()
            )
        );
    }

    #[test]
    fn list_operators_refuse_single_strings() {
        assert_eq!(
            problem("c in \"US\""),
            ScopingProblem::ExpectedList {
                operator: RuleOperator::In,
                offset: 5
            }
        );
        assert_eq!(
            parse_rule("c not_in \"US\"").map_err(|e| e.to_string()),
            Err(
                "scoping rule `c not_in \"US\"`: `not_in` at 9 takes a list such as (\"US\", \
                 \"CA\")"
                    .to_string()
            )
        );
    }

    #[test]
    fn empty_lists_and_operands_are_refused() {
        assert_eq!(problem("c in ( )"), ScopingProblem::EmptyList { offset: 5 });
        assert_eq!(
            problem("c equals \"\""),
            ScopingProblem::EmptyOperand { offset: 9 }
        );
        assert_eq!(
            problem("c in (\"US\", \"\")"),
            ScopingProblem::EmptyOperand { offset: 12 }
        );
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert_eq!(
            problem("c in (\"US\" \"CA\")"),
            ScopingProblem::Syntax(ExpressionError::UnexpectedCharacter {
                found: '"',
                offset: 11,
                expected: "`,` or `)`"
            })
        );
        assert_eq!(
            problem("c in (\"US\",)"),
            ScopingProblem::Syntax(ExpressionError::UnexpectedCharacter {
                found: ')',
                offset: 11,
                expected: "a string"
            })
        );
        assert_eq!(
            problem("c in (\"US\""),
            ScopingProblem::Syntax(ExpressionError::UnexpectedEnd {
                offset: 10,
                expected: "`,` or `)`"
            })
        );
    }

    #[test]
    fn string_and_attribute_errors_come_from_the_expression_syntax() {
        assert_eq!(
            problem("c equals \"Sales"),
            ScopingProblem::Syntax(ExpressionError::UnclosedString { offset: 9 })
        );
        assert_eq!(
            parse_rule("c equals \"Sales").map_err(|e| e.to_string()),
            Err("scoping rule `c equals \"Sales`: unclosed string at 9".to_string())
        );
        assert_eq!(
            problem("google:c equals \"x\""),
            ScopingProblem::Syntax(ExpressionError::UnknownSource {
                prefix: "google".into(),
                offset: 0
            })
        );
        assert_eq!(
            problem("okta: equals \"x\""),
            ScopingProblem::Syntax(ExpressionError::MissingAttributeName {
                prefix: "okta".into(),
                offset: 5
            })
        );
        assert_eq!(
            problem(""),
            ScopingProblem::Syntax(ExpressionError::UnexpectedEnd {
                offset: 0,
                expected: "an attribute name"
            })
        );
        assert_eq!(
            problem("\"department\" equals \"x\""),
            ScopingProblem::Syntax(ExpressionError::UnexpectedCharacter {
                found: '"',
                offset: 0,
                expected: "an attribute name"
            })
        );
    }

    #[test]
    fn trailing_input_is_refused() {
        assert_eq!(
            problem("c equals \"x\" or d equals \"y\""),
            ScopingProblem::TrailingInput { offset: 13 }
        );
        assert_eq!(
            problem("c in (\"x\"))"),
            ScopingProblem::TrailingInput { offset: 10 }
        );
    }

    #[test]
    fn scoping_rules_parse_reports_the_first_bad_rule() {
        let error = ScopingRules::parse(["a equals \"x\"", "b eq \"y\"", "c oops"], true);
        assert_eq!(error.map_err(|e| e.rule), Err("b eq \"y\"".to_string()));
        let owned: Vec<String> = vec!["a equals \"x\"".into()];
        assert_eq!(
            ScopingRules::parse(&owned, false).map(|r| r.rules().len()),
            Ok(1)
        );
    }

    // Operators.

    #[test]
    fn equals_compares_case_insensitively_after_trimming() {
        assert!(matches(
            "department equals \"Sales\"",
            &[("department", "Sales")]
        ));
        assert!(matches(
            "department equals \"Sales\"",
            &[("department", " sALES ")]
        ));
        assert!(matches("city equals \"ZÜRICH\"", &[("city", "zürich")]));
        assert!(!matches(
            "department equals \"Sales\"",
            &[("department", "Sales Ops")]
        ));
    }

    #[test]
    fn not_equals_is_the_negation_of_equals_for_present_values() {
        assert!(matches(
            "department not_equals \"Sales\"",
            &[("department", "Ops")]
        ));
        assert!(!matches(
            "department not_equals \"Sales\"",
            &[("department", "SALES")]
        ));
    }

    #[test]
    fn in_matches_any_list_member() {
        let text = "country in (\"US\", \"CA\")";
        assert!(matches(text, &[("country", "ca")]));
        assert!(matches(text, &[("country", "US")]));
        assert!(!matches(text, &[("country", "FR")]));
    }

    #[test]
    fn not_in_matches_values_outside_the_list() {
        let text = "country not_in (\"US\", \"CA\")";
        assert!(matches(text, &[("country", "FR")]));
        assert!(!matches(text, &[("country", "Us")]));
    }

    #[test]
    fn starts_with_compares_prefixes_case_insensitively() {
        let text = "title starts_with \"Eng\"";
        assert!(matches(text, &[("title", "Engineer")]));
        assert!(matches(text, &[("title", "  engineering manager")]));
        assert!(matches(text, &[("title", "ENG")]));
        assert!(!matches(text, &[("title", "Senior Engineer")]));
        // The operand is kept as written, spaces included.
        assert!(!matches(
            "title starts_with \"Eng \"",
            &[("title", "Engineer")]
        ));
        assert!(matches(
            "title starts_with \"Eng \"",
            &[("title", "eng lead")]
        ));
    }

    #[test]
    fn a_missing_attribute_satisfies_only_the_negative_operators() {
        for (text, expected) in [
            ("c equals \"US\"", false),
            ("c in (\"US\")", false),
            ("c starts_with \"U\"", false),
            ("c not_equals \"US\"", true),
            ("c not_in (\"US\")", true),
        ] {
            assert_eq!(matches(text, &[]), expected, "{text}");
            // Empty and whitespace-only values are missing too.
            assert_eq!(matches(text, &[("c", "")]), expected, "{text}");
            assert_eq!(matches(text, &[("c", "  ")]), expected, "{text}");
        }
    }

    // Combining rules.

    #[test]
    fn no_rules_admit_everyone() {
        for match_all in [true, false] {
            let rules = ScopingRules::new(Vec::new(), match_all);
            assert!(rules.is_empty());
            assert!(admits(&rules, Source::Okta, &[]));
            assert!(admits(&rules, Source::Entra, &[]));
        }
        assert!(ScopingRules::default().is_empty());
        assert!(admits(&ScopingRules::default(), Source::Okta, &[]));
    }

    #[test]
    fn all_of_needs_every_rule() {
        let rules = rules(
            &["department equals \"Sales\"", "country in (\"US\", \"CA\")"],
            true,
        );
        assert!(!rules.is_empty());
        assert!(rules.match_all());
        assert!(admits(
            &rules,
            Source::Okta,
            &[("department", "sales"), ("country", "US")]
        ));
        assert!(!admits(
            &rules,
            Source::Okta,
            &[("department", "sales"), ("country", "FR")]
        ));
        assert!(!admits(&rules, Source::Okta, &[("country", "US")]));
        assert!(!admits(&rules, Source::Okta, &[]));
    }

    #[test]
    fn any_of_needs_one_rule() {
        let rules = rules(
            &["department equals \"Sales\"", "country in (\"US\", \"CA\")"],
            false,
        );
        assert!(!rules.match_all());
        assert!(admits(&rules, Source::Okta, &[("department", "Sales")]));
        assert!(admits(&rules, Source::Okta, &[("country", "ca")]));
        assert!(!admits(
            &rules,
            Source::Okta,
            &[("department", "Ops"), ("country", "FR")]
        ));
        assert!(!admits(&rules, Source::Okta, &[]));
    }

    #[test]
    fn a_qualified_rule_is_for_its_idp_only() {
        let rule = rule("okta:department equals \"Sales\"");
        assert!(rule.applies_to(Source::Okta));
        assert!(!rule.applies_to(Source::Entra));
        assert!(parse_rule("department equals \"x\"").is_ok_and(|r| r.applies_to(Source::Entra)));
    }

    #[test]
    fn all_of_ignores_rules_for_the_other_idp() {
        let rules = rules(
            &[
                "okta:department equals \"Sales\"",
                "entra:companyName equals \"Acme\"",
            ],
            true,
        );
        // An Okta user is not held to the Entra rule, nor an Entra user to the Okta one.
        assert!(admits(&rules, Source::Okta, &[("department", "Sales")]));
        assert!(!admits(&rules, Source::Okta, &[("companyName", "Acme")]));
        assert!(admits(&rules, Source::Entra, &[("companyName", "Acme")]));
        assert!(!admits(&rules, Source::Entra, &[("department", "Sales")]));
    }

    #[test]
    fn any_of_does_not_count_rules_for_the_other_idp() {
        let rules = rules(
            &[
                "entra:companyName equals \"Acme\"",
                "okta:department equals \"Sales\"",
            ],
            false,
        );
        // The Entra rule would match, but an Okta user is judged by the Okta rule alone.
        assert!(!admits(
            &rules,
            Source::Okta,
            &[("companyName", "Acme"), ("department", "Ops")]
        ));
        assert!(admits(&rules, Source::Okta, &[("department", "Sales")]));
    }

    #[test]
    fn rules_all_for_the_other_idp_admit_everyone() {
        for match_all in [true, false] {
            let rules = rules(
                &[
                    "entra:companyName equals \"Acme\"",
                    "entra:country in (\"US\")",
                ],
                match_all,
            );
            assert!(admits(&rules, Source::Okta, &[]));
            assert!(!admits(&rules, Source::Entra, &[]));
        }
    }

    #[test]
    fn attributes_lists_each_reference_once_in_order() {
        let rules = rules(
            &[
                "department equals \"Sales\"",
                "okta:country in (\"US\")",
                "department not_equals \"Ops\"",
                "entra:country equals \"US\"",
            ],
            true,
        );
        assert_eq!(
            rules.attributes(),
            vec![
                (None, "department"),
                (Some(Source::Okta), "country"),
                (Some(Source::Entra), "country"),
            ]
        );
        assert!(ScopingRules::default().attributes().is_empty());
    }
}
