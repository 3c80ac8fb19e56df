//! Type descriptions: what a job's output and state types look like, recorded at job
//! creation so that tools without the job's code (the `resumable` CLI) can show stored
//! values as JSON.
//!
//! At creation the job traces the serde data format of `S::Output` and `S` with
//! `serde-reflection` and stores each as a [`Described`] in the job's optional `types`
//! table (FORMAT.md). [`TypeDescription::decode_json`] turns a stored bincode payload into
//! the JSON `serde_json` would make of the value. Types that cannot be traced (custom
//! `Deserialize` impls that validate, `deserialize_any`, ...) are recorded as
//! [`Described::NotDescribable`] with the reason; their outputs stay readable only as bytes.

mod decode;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_reflection::{Format, FormatHolder as _, Registry, Samples, Tracer, TracerConfig};

use crate::error::{Error, Result};
use crate::job::Fold;
use crate::store::Store;

/// Key of the output type's description in a job's `types` table.
pub(crate) const OUTPUT_KEY: &str = "output";
/// Key of the state type's description in a job's `types` table.
pub(crate) const STATE_KEY: &str = "state";

/// The traced serde format of one type: the root format and every named type it uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDescription {
    root: Format,
    registry: Registry,
}

impl TypeDescription {
    /// Traces `T`'s serde format.
    ///
    /// # Errors
    /// The reason when `T` cannot be traced without sample values (for example a custom
    /// `Deserialize` that validates, or one that needs a self-describing format).
    pub fn of<T: DeserializeOwned>() -> std::result::Result<TypeDescription, String> {
        match catch_unwind(AssertUnwindSafe(trace::<T>)) {
            Ok(result) => result,
            Err(_) => Err("tracing the type panicked".to_owned()),
        }
    }

    /// Decodes a stored payload (bincode, the store's encoding) of the described type to
    /// the JSON value `serde_json::to_value` gives for it. Never panics on hostile bytes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes are not one value of the described type.
    pub fn decode_json(&self, bytes: &[u8]) -> Result<serde_json::Value> {
        decode::decode(&self.root, &self.registry, bytes)
            .map_err(|e| Error::corrupt("stored value", "a value of the described type", e))
    }

    /// The described root type's name, when it is a named type (struct or enum).
    #[must_use]
    pub fn type_name(&self) -> Option<&str> {
        match &self.root {
            Format::TypeName(name) => Some(name),
            _ => None,
        }
    }
}

/// What a job recorded about one of its types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Described {
    /// The traced format.
    Typed(TypeDescription),
    /// The type could not be traced; the reason.
    NotDescribable {
        /// Why tracing failed.
        reason: String,
    },
}

impl Described {
    fn of<T: DeserializeOwned>() -> Described {
        match TypeDescription::of::<T>() {
            Ok(d) => Described::Typed(d),
            Err(reason) => Described::NotDescribable { reason },
        }
    }

    /// The description, when the type could be traced.
    #[must_use]
    pub fn description(&self) -> Option<&TypeDescription> {
        match self {
            Described::Typed(d) => Some(d),
            Described::NotDescribable { .. } => None,
        }
    }
}

/// The type descriptions a job recorded at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobTypes {
    /// The output type (`Fold::Output`); `None` when not recorded.
    pub output: Option<Described>,
    /// The state type; `None` when not recorded.
    pub state: Option<Described>,
}

impl Store {
    /// The type descriptions job `job` recorded at creation; `None` for jobs created by
    /// builds before type descriptions (their `types` table is absent).
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] when a stored description does not parse.
    pub fn job_types(&self, job: &str) -> Result<Option<JobTypes>> {
        let Some(rows) = self.read_job_types(job)? else {
            return Ok(None);
        };
        let mut types = JobTypes {
            output: None,
            state: None,
        };
        for (key, bytes) in rows {
            let slot = match key.as_str() {
                OUTPUT_KEY => &mut types.output,
                STATE_KEY => &mut types.state,
                _ => continue,
            };
            let described: Described = serde_json::from_slice(&bytes).map_err(|e| {
                Error::corrupt(
                    format!("type description {key:?} of job {job:?}"),
                    "a JSON type description",
                    e.to_string(),
                )
            })?;
            *slot = Some(described);
        }
        Ok(Some(types))
    }
}

/// Makes the rows of a new job's `types` table (`(key, JSON)`).
pub(crate) type DescribeTypes = fn() -> Vec<(&'static str, Vec<u8>)>;

/// Rows of a job's `types` table as stored: `(key, JSON)`.
pub(crate) type TypeRows = Vec<(String, Vec<u8>)>;

/// The rows of a new job's `types` table for state type `S`: traced here, once, at creation.
pub(crate) fn describe_job<S: Fold>() -> Vec<(&'static str, Vec<u8>)> {
    [
        (OUTPUT_KEY, Described::of::<S::Output>()),
        (STATE_KEY, Described::of::<S>()),
    ]
    .into_iter()
    .filter_map(|(key, described)| {
        if let Described::NotDescribable { reason } = &described {
            tracing::info!(
                key,
                reason = reason.as_str(),
                "type not describable: the CLI will show its stored values as bytes"
            );
        }
        serde_json::to_vec(&described)
            .ok()
            .map(|bytes| (key, bytes))
    })
    .collect()
}

/// Most times one type is traced from scratch after learning of more nested enums.
const MAX_ATTEMPTS: usize = 16;
/// Most tracing rounds per attempt (each round finds one more variant of each enum).
const MAX_ROUNDS: usize = 4096;

/// Traces `T`, repeating until every variant of every enum it contains is known.
///
/// `Tracer::trace_simple_type` repeats only while the root type is an incomplete enum; a
/// nested enum's remaining variants are found by tracing again after clearing its mark
/// (`check_incomplete_enum`), which needs its name: names come from the root format and
/// from the registry's `MissingVariants` error, after which tracing starts over knowing them.
fn trace<T: DeserializeOwned>() -> std::result::Result<TypeDescription, String> {
    let samples = Samples::new();
    let mut enums: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut root = None;
        for _ in 0..MAX_ROUNDS {
            let (format, _) = tracer
                .trace_type_once::<T>(&samples)
                .map_err(|e| e.to_string())?;
            if let Format::TypeName(name) = &format {
                enums.insert(name.clone());
            }
            root = Some(format);
            let mut incomplete = false;
            for name in &enums {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if !incomplete {
                break;
            }
        }
        let Some(mut root) = root else {
            return Err("tracing made no progress".to_owned());
        };
        match tracer.registry() {
            Ok(registry) => {
                root.normalize().map_err(|e| e.to_string())?;
                check_enums_complete(&registry)?;
                return Ok(TypeDescription { root, registry });
            }
            Err(serde_reflection::Error::MissingVariants(names)) => {
                let before = enums.len();
                enums.extend(names);
                if enums.len() == before {
                    return Err("enum variants remain untraced".to_owned());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("enum variants remain untraced".to_owned())
}

/// Refuses a registry with an enum whose variants were not all traced to their indices.
///
/// `serde-reflection` 0.6 traces the contents of an `Option`, a sequence or a map once per
/// tracer, so an enum reached only through one of them keeps its first variant, under a
/// provisional index near `u32::MAX`; decoding its other variants would fail, so such a
/// type is recorded as not describable.
fn check_enums_complete(registry: &Registry) -> std::result::Result<(), String> {
    for (name, container) in registry {
        if let serde_reflection::ContainerFormat::Enum(variants) = container
            && variants.keys().any(|&i| i >= PROVISIONAL_INDEX)
        {
            return Err(format!(
                "the variants of enum {name} could not all be traced: an enum reached only \
                 inside an Option, a Vec or a map is traced one variant at a time by \
                 serde-reflection; add a direct field of that enum type to describe it"
            ));
        }
    }
    Ok(())
}

/// Variant indices at or above this are `serde-reflection`'s provisional ones.
const PROVISIONAL_INDEX: u32 = u32::MAX - 65_536;

#[cfg(test)]
mod tests;
