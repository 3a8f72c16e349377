//! One SQL dialect over two drivers: the store's queries are written once, with `?1`-style
//! placeholders and SQL that SQLite and PostgreSQL both accept (`ON CONFLICT`, `COALESCE`,
//! `CAST(? AS TEXT)`), plus two words each driver spells its own way (`{clock}` and
//! `{skip_locked}`, below), and run on an embedded SQLite file (rusqlite) or a PostgreSQL server
//! (the synchronous `postgres` crate, which fits the store's blocking calls as rusqlite does).
//! Values cross as [`Value`]s; a row is a list of them. Transactions nest: the outermost is a
//! transaction, inner ones are savepoints.

use std::cell::{Cell, RefCell};
use std::error::Error as StdError;

use postgres::types::private::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A value going into or coming out of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as i64)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Query arguments: `args![a, b, c]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::Value::from($value)),*][..]
    };
}
pub(crate) use args;

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<Value>);

impl Row {
    /// The `i`-th value as it came.
    pub fn value(&self, i: usize) -> Value {
        self.0[i].clone()
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match &self.0[i] {
            Value::Text(s) => Some(s.clone()),
            Value::Int(v) => Some(v.to_string()),
            Value::Real(v) => Some(v.to_string()),
            Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Null => None,
        }
    }

    /// The `i`-th value's bytes (a text's UTF-8 bytes).
    pub fn blob(&self, i: usize) -> Vec<u8> {
        match &self.0[i] {
            Value::Blob(b) => b.clone(),
            Value::Text(s) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or_default()
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match &self.0[i] {
            Value::Int(v) => Some(*v),
            Value::Real(v) => Some(*v as i64),
            _ => None,
        }
    }

    pub fn opt_real(&self, i: usize) -> Option<f64> {
        match &self.0[i] {
            Value::Real(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn real(&self, i: usize) -> f64 {
        self.opt_real(i).unwrap_or(f64::NAN)
    }
}

/// A driver's error.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

impl DbError {
    /// Whether a UNIQUE (or primary key) constraint refused the statement.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            DbError::Sqlite(_) => false,
            DbError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
        }
    }
}

/// A connection to either database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: RefCell<postgres::Client>,
        /// Open transactions and savepoints.
        depth: Cell<usize>,
    },
}

impl Db {
    pub fn postgres(client: postgres::Client) -> Db {
        Db::Postgres {
            client: RefCell::new(client),
            depth: Cell::new(0),
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<usize, DbError> {
        match self {
            Db::Sqlite(conn) => {
                let sql = sqlite_dialect(sql);
                Ok(conn.execute(&sql, rusqlite::params_from_iter(args.iter()))?)
            }
            Db::Postgres { client, .. } => {
                let sql = postgres_dialect(sql);
                Ok(client.borrow_mut().execute(&sql, &pg_args(args))? as usize)
            }
        }
    }

    /// Every row of a query.
    pub fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare(&sqlite_dialect(sql))?;
                let width = stmt.column_count();
                let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    (0..width).map(|i| sqlite_value(r, i)).collect()
                })?;
                Ok(rows
                    .collect::<rusqlite::Result<Vec<Vec<Value>>>>()?
                    .into_iter()
                    .map(Row)
                    .collect())
            }
            Db::Postgres { client, .. } => {
                let sql = postgres_dialect(sql);
                let rows = client.borrow_mut().query(&sql, &pg_args(args))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let values = (0..r.len())
                        .map(|i| pg_value(r, i))
                        .collect::<Result<Vec<Value>, _>>()?;
                    out.push(Row(values));
                }
                Ok(out)
            }
        }
    }

    /// Statements without arguments, separated by semicolons.
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Postgres { client, .. } => Ok(client.borrow_mut().batch_execute(sql)?),
        }
    }

    /// Starts a transaction that will write: SQLite takes its write lock now (a deferred
    /// transaction that reads first could not upgrade once another process has written), so
    /// read-then-write steps such as claiming a trial see no other writer in between. Only at
    /// the outermost level.
    pub fn begin_write(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE; SAVEPOINT facelab"),
            Db::Postgres { .. } => self.begin(),
        }
    }

    /// Ends what [`Db::begin_write`] began.
    pub fn commit_write(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("RELEASE facelab; COMMIT"),
            Db::Postgres { .. } => self.commit(),
        }
    }

    pub fn rollback_write(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("ROLLBACK"),
            Db::Postgres { .. } => self.rollback(),
        }
    }

    /// Starts a transaction, or a savepoint inside one.
    pub fn begin(&self) -> Result<(), DbError> {
        match self {
            // A savepoint outside a transaction starts one (deferred), in SQLite.
            Db::Sqlite(_) => self.batch("SAVEPOINT facelab"),
            Db::Postgres { depth, .. } => {
                let level = depth.get();
                if level == 0 {
                    self.batch("BEGIN")?;
                } else {
                    self.batch(&format!("SAVEPOINT facelab_{level}"))?;
                }
                depth.set(level + 1);
                Ok(())
            }
        }
    }

    pub fn commit(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("RELEASE facelab"),
            Db::Postgres { depth, .. } => {
                let level = depth.get().saturating_sub(1);
                depth.set(level);
                if level == 0 {
                    self.batch("COMMIT")
                } else {
                    self.batch(&format!("RELEASE SAVEPOINT facelab_{level}"))
                }
            }
        }
    }

    pub fn rollback(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("ROLLBACK TO facelab; RELEASE facelab"),
            Db::Postgres { depth, .. } => {
                let level = depth.get().saturating_sub(1);
                depth.set(level);
                if level == 0 {
                    self.batch("ROLLBACK")
                } else {
                    self.batch(&format!(
                        "ROLLBACK TO SAVEPOINT facelab_{level}; RELEASE SAVEPOINT facelab_{level}"
                    ))
                }
            }
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn sqlite_value(row: &rusqlite::Row, i: usize) -> rusqlite::Result<Value> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(i)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

/// A value written as the column's type asks (PostgreSQL is strict about integer widths).
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_args(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value, postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map_or(Value::Null, |v| Value::Real(v.into())),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Blob),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
    })
}

/// The database's clock in seconds since the Unix epoch, written where a query says
/// `{clock}`: every machine that shares a server judges heartbeats by the server's clock, so
/// the workers' own clocks need not agree.
const CLOCK: &str = "{clock}";

/// Row locks that let concurrent claimers pass each other, written where a query says
/// `{skip_locked}`. SQLite has one writer at a time (claims run in [`Db::begin_write`]), so it
/// needs none.
const SKIP_LOCKED: &str = "{skip_locked}";

fn sqlite_dialect(sql: &str) -> String {
    sql.replace(CLOCK, "((julianday('now') - 2440587.5) * 86400.0)")
        .replace(SKIP_LOCKED, "")
}

fn postgres_dialect(sql: &str) -> String {
    dollar_placeholders(sql)
        .replace(
            CLOCK,
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
        )
        .replace(SKIP_LOCKED, "FOR UPDATE SKIP LOCKED")
}

/// `?1` placeholders as PostgreSQL's `$1` (outside quoted literals).
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            dollar_placeholders("SELECT '?1', ?1 FROM t WHERE a = ?12 AND b = '?'"),
            "SELECT '?1', $1 FROM t WHERE a = $12 AND b = '?'"
        );
    }

    #[test]
    fn sqlite_round_trips_every_kind_of_value_and_nests_transactions() {
        let db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (a INTEGER, b REAL, c TEXT)")
            .unwrap();
        db.execute("INSERT INTO t VALUES (?1, ?2, ?3)", args![7i64, 0.5, "x"])
            .unwrap();
        db.begin().unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            args![None::<i64>, None::<f64>, None::<String>],
        )
        .unwrap();
        db.rollback().unwrap();
        let rows = db.query("SELECT a, b, c FROM t", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].int(0), rows[0].real(1), rows[0].text(2)),
            (7, 0.5, "x".into())
        );
    }
}
