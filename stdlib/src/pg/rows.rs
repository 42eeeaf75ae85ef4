//! Rows as Rhai maps: each column's PostgreSQL value as the nearest Rhai
//! value. `bool` → bool; `int2/int4/int8/oid` → int; `float4/float8` →
//! float; `numeric` → int when whole and in range, else its exact text;
//! text types, enums, `uuid`, dates and times → strings (times in RFC 3339);
//! `json/jsonb` → maps and arrays; `bytea` → blob; arrays → arrays; NULL →
//! `()`. Anything else is an error that says to cast the column to `text`.

use std::error::Error;
use std::fmt::Write as _;

use rhai::{Array, Dynamic, Map};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Kind, Type};

use crate::host::StdlibError;

type BoxError = Box<dyn Error + Sync + Send>;

/// One column value, converted.
struct Cell(Dynamic);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        convert(ty, raw).map(Cell)
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Dynamic::UNIT))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn convert(ty: &Type, raw: &[u8]) -> Result<Dynamic, BoxError> {
    Ok(match *ty {
        Type::BOOL => Dynamic::from_bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Dynamic::from_int(i16::from_sql(ty, raw)?.into()),
        Type::INT4 => Dynamic::from_int(i32::from_sql(ty, raw)?.into()),
        Type::INT8 => Dynamic::from_int(i64::from_sql(ty, raw)?),
        Type::OID => Dynamic::from_int(u32::from_sql(ty, raw)?.into()),
        Type::FLOAT4 => Dynamic::from_float(f32::from_sql(ty, raw)?.into()),
        Type::FLOAT8 => Dynamic::from_float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => {
            let text = numeric(raw)?;
            match text.parse::<i64>() {
                Ok(number) => Dynamic::from_int(number),
                Err(_) => Dynamic::from(text),
            }
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
            Dynamic::from(String::from_utf8_lossy(raw).into_owned())
        }
        Type::JSON | Type::JSONB => crate::values::from_json(serde_json::Value::from_sql(ty, raw)?),
        Type::TIMESTAMPTZ => Dynamic::from(
            chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        Type::TIMESTAMP => Dynamic::from(
            chrono::NaiveDateTime::from_sql(ty, raw)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        ),
        Type::DATE => Dynamic::from(chrono::NaiveDate::from_sql(ty, raw)?.to_string()),
        Type::TIME => Dynamic::from(chrono::NaiveTime::from_sql(ty, raw)?.to_string()),
        Type::UUID => Dynamic::from(uuid(raw)?),
        Type::BYTEA => Dynamic::from_blob(raw.to_vec()),
        _ => match ty.kind() {
            Kind::Enum(_) => Dynamic::from(String::from_utf8_lossy(raw).into_owned()),
            Kind::Domain(inner) => convert(inner, raw)?,
            Kind::Array(_) => Dynamic::from_array(
                Vec::<Cell>::from_sql(ty, raw)?
                    .into_iter()
                    .map(|Cell(value)| value)
                    .collect(),
            ),
            _ => return Err(format!("type `{}` is not converted", ty.name()).into()),
        },
    })
}

/// The exact text of a binary `numeric`.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let word = |index: usize| -> Result<i16, BoxError> {
        raw.get(index * 2..index * 2 + 2)
            .map(|bytes| i16::from_be_bytes([bytes[0], bytes[1]]))
            .ok_or_else(|| "truncated numeric".into())
    };
    let count = usize::try_from(word(0)?).map_err(|_| "bad numeric")?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let scale = usize::try_from(word(3)?).map_err(|_| "bad numeric")?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..count).map(|i| word(4 + i)).collect::<Result<_, _>>()?;
    let digit = |position: i32| -> i16 {
        usize::try_from(position)
            .ok()
            .and_then(|index| digits.get(index).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for position in 0..=weight {
            if position == 0 {
                let _ = write!(text, "{}", digit(position));
            } else {
                let _ = write!(text, "{:04}", digit(position));
            }
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut position = weight + 1;
        while fraction.len() < scale {
            let _ = write!(fraction, "{:04}", digit(position));
            position += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

fn uuid(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad uuid".into());
    }
    let hex = crate::text::hex(raw);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Rows as maps of column name → value.
pub(crate) fn to_array(rows: &[Row]) -> Result<Array, StdlibError> {
    let mut array = Array::with_capacity(rows.len());
    for row in rows {
        let mut map = Map::new();
        for (index, column) in row.columns().iter().enumerate() {
            let Cell(value) = row.try_get::<_, Cell>(index).map_err(|error| {
                StdlibError::failed(
                    format!(
                        "pg: column `{}` (type `{}`) cannot be read: {}",
                        column.name(),
                        column.type_().name(),
                        crate::text::error_chain(&error)
                    ),
                    format!("cast it in the query, e.g. `{}::text`", column.name()),
                )
            })?;
            map.insert(column.name().into(), value);
        }
        array.push(Dynamic::from_map(map));
    }
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(weight: i16, sign: u16, scale: i16, digits: &[i16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for word in [digits.len() as i16, weight, sign as i16, scale] {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        for digit in digits {
            raw.extend_from_slice(&digit.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_keep_their_digits() {
        // 12345678.90
        assert_eq!(
            numeric(&encode(1, 0, 2, &[1234, 5678, 9000])).unwrap(),
            "12345678.90"
        );
        // -0.0012
        assert_eq!(numeric(&encode(-1, 0x4000, 4, &[12])).unwrap(), "-0.0012");
        // 20000
        assert_eq!(numeric(&encode(1, 0, 0, &[2])).unwrap(), "20000");
        assert_eq!(numeric(&encode(0, 0, 0, &[])).unwrap(), "0");
    }
}
