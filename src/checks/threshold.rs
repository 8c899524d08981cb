//! Thresholds on a measured value: `must_be`, `must_be_less_than`, `must_be_between`, …
//!
//! A threshold is a conjunction: the value passes when every condition holds. A value that
//! is not a number (NULL, NaN) passes no condition, so a check whose metric cannot be
//! measured fails instead of passing by accident.

use std::fmt;

use serde::Serialize;

/// The threshold keys a check (and its `warn:` and `each:`) may use.
pub const KEYS: [&str; 8] = [
    "must_be",
    "must_not_be",
    "must_be_greater_than",
    "must_be_greater_than_or_equal",
    "must_be_less_than",
    "must_be_less_than_or_equal",
    "must_be_between",
    "must_be_not_between",
];

/// One condition on the value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cond {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    /// Inclusive at both ends.
    Between(f64, f64),
    /// Outside `[lo, hi]`.
    NotBetween(f64, f64),
}

impl Cond {
    pub fn holds(self, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        match self {
            Cond::Eq(x) => v == x,
            Cond::Ne(x) => v != x,
            Cond::Gt(x) => v > x,
            Cond::Ge(x) => v >= x,
            Cond::Lt(x) => v < x,
            Cond::Le(x) => v <= x,
            Cond::Between(lo, hi) => lo <= v && v <= hi,
            Cond::NotBetween(lo, hi) => v < lo || v > hi,
        }
    }

    /// The condition as SQL over `expr` (for `each:` of aggregate checks).
    pub fn sql(self, expr: &str) -> String {
        let n = |x: f64| sql_number(x);
        match self {
            Cond::Eq(x) => format!("{expr} = {}", n(x)),
            Cond::Ne(x) => format!("{expr} <> {}", n(x)),
            Cond::Gt(x) => format!("{expr} > {}", n(x)),
            Cond::Ge(x) => format!("{expr} >= {}", n(x)),
            Cond::Lt(x) => format!("{expr} < {}", n(x)),
            Cond::Le(x) => format!("{expr} <= {}", n(x)),
            Cond::Between(lo, hi) => format!("{expr} BETWEEN {} AND {}", n(lo), n(hi)),
            Cond::NotBetween(lo, hi) => format!("{expr} NOT BETWEEN {} AND {}", n(lo), n(hi)),
        }
    }
}

/// A number as a SQL literal both Postgres and DataFusion read exactly.
pub fn sql_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:?}")
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cond::Eq(x) => write!(f, "must_be {x}"),
            Cond::Ne(x) => write!(f, "must_not_be {x}"),
            Cond::Gt(x) => write!(f, "must_be_greater_than {x}"),
            Cond::Ge(x) => write!(f, "must_be_greater_than_or_equal {x}"),
            Cond::Lt(x) => write!(f, "must_be_less_than {x}"),
            Cond::Le(x) => write!(f, "must_be_less_than_or_equal {x}"),
            Cond::Between(lo, hi) => write!(f, "must_be_between [{lo}, {hi}]"),
            Cond::NotBetween(lo, hi) => write!(f, "must_be_not_between [{lo}, {hi}]"),
        }
    }
}

/// A conjunction of conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Threshold {
    pub conds: Vec<Cond>,
}

impl Threshold {
    pub fn new(conds: Vec<Cond>) -> Self {
        Threshold { conds }
    }

    /// `must_be: 0`.
    pub fn zero() -> Self {
        Threshold::new(vec![Cond::Eq(0.0)])
    }

    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// Whether `value` meets every condition; a value that could not be measured meets none.
    pub fn holds(&self, value: Option<f64>) -> bool {
        match value {
            Some(v) => self.conds.iter().all(|c| c.holds(v)),
            None => false,
        }
    }

    /// The threshold as SQL over `expr`; NULL counts as breaking it.
    pub fn sql(&self, expr: &str) -> String {
        let all: Vec<String> = self.conds.iter().map(|c| c.sql(expr)).collect();
        format!("COALESCE({}, FALSE)", all.join(" AND "))
    }

    /// Parses one threshold key. `scale` converts the written unit (freshness thresholds may
    /// be durations: `2h`) to the value's unit. Errors say what the key takes.
    pub fn push_key(
        &mut self,
        key: &str,
        value: &serde_json::Value,
        number: impl Fn(&serde_json::Value) -> Option<f64>,
    ) -> Result<(), String> {
        let one = || {
            number(value)
                .ok_or_else(|| format!("`{key}` takes a number, not {}", describe_json(value)))
        };
        let two = || -> Result<(f64, f64), String> {
            let bad = || {
                format!(
                    "`{key}` takes two numbers `[low, high]`, not {}",
                    describe_json(value)
                )
            };
            let list = value.as_array().ok_or_else(bad)?;
            match list.as_slice() {
                [lo, hi] => {
                    let (lo, hi) = (number(lo).ok_or_else(bad)?, number(hi).ok_or_else(bad)?);
                    if lo > hi {
                        return Err(format!(
                            "`{key}`: the low bound {lo} is above the high bound {hi}"
                        ));
                    }
                    Ok((lo, hi))
                }
                _ => Err(bad()),
            }
        };
        let cond = match key {
            "must_be" => Cond::Eq(one()?),
            "must_not_be" => Cond::Ne(one()?),
            "must_be_greater_than" => Cond::Gt(one()?),
            "must_be_greater_than_or_equal" => Cond::Ge(one()?),
            "must_be_less_than" => Cond::Lt(one()?),
            "must_be_less_than_or_equal" => Cond::Le(one()?),
            "must_be_between" => {
                let (lo, hi) = two()?;
                Cond::Between(lo, hi)
            }
            "must_be_not_between" => {
                let (lo, hi) = two()?;
                Cond::NotBetween(lo, hi)
            }
            other => return Err(format!("`{other}` is not a threshold key")),
        };
        self.conds.push(cond);
        Ok(())
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conds.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A plain number (YAML int or float).
pub fn plain_number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// What a YAML value is, for messages.
/// `v` for people: an integer as one, otherwise at most 3 decimals (`8.9`, `0.333`).
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

pub fn describe_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("`{b}`"),
        serde_json::Value::Number(n) => format!("`{n}`"),
        serde_json::Value::String(s) => format!("the text `{s}`"),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::Object(_) => "a mapping".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(pairs: &[(&str, serde_json::Value)]) -> Result<Threshold, String> {
        let mut t = Threshold::default();
        for (k, v) in pairs {
            t.push_key(k, v, plain_number)?;
        }
        Ok(t)
    }

    #[test]
    fn conditions_hold_as_named() {
        let t = parse(&[
            ("must_be_between", json!([1, 10])),
            ("must_not_be", json!(5)),
        ])
        .unwrap();
        assert!(t.holds(Some(1.0)) && t.holds(Some(10.0)) && t.holds(Some(4.5)));
        assert!(!t.holds(Some(5.0)) && !t.holds(Some(0.99)) && !t.holds(Some(10.01)));
        assert!(
            !t.holds(None) && !t.holds(Some(f64::NAN)),
            "unmeasured never passes"
        );
        let t = parse(&[("must_be_not_between", json!([1, 10]))]).unwrap();
        assert!(t.holds(Some(0.0)) && t.holds(Some(11.0)) && !t.holds(Some(1.0)));
        let t = parse(&[
            ("must_be_greater_than_or_equal", json!(2)),
            ("must_be_less_than", json!(3)),
        ])
        .unwrap();
        assert!(t.holds(Some(2.0)) && !t.holds(Some(3.0)));
        assert_eq!(
            t.to_string(),
            "must_be_greater_than_or_equal 2 and must_be_less_than 3"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let e = parse(&[("must_be_between", json!(5))]).unwrap_err();
        assert_eq!(
            e,
            "`must_be_between` takes two numbers `[low, high]`, not `5`"
        );
        let e = parse(&[("must_be", json!("many"))]).unwrap_err();
        assert_eq!(e, "`must_be` takes a number, not the text `many`");
        let e = parse(&[("must_be_between", json!([9, 1]))]).unwrap_err();
        assert!(e.contains("low bound 9 is above the high bound 1"), "{e}");
    }

    #[test]
    fn sql_form_treats_null_as_breaking() {
        let t = parse(&[
            ("must_be_less_than_or_equal", json!(5)),
            ("must_be_greater_than", json!(0.5)),
        ])
        .unwrap();
        assert_eq!(t.sql("v"), "COALESCE(v <= 5 AND v > 0.5, FALSE)");
    }
}
