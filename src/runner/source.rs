//! Where the runner reads records from.

use std::ops::Range;

use crate::error::BoxError;

/// A source of records, each named by a `u64` id.
///
/// The runner asks only for records it still needs: after a resume it calls
/// [`Source::seek`] to jump over each range of done ids, so a job that crashed at record 9
/// million does not read the first 9 million again. A source that cannot seek returns
/// `Ok(false)` (the default) and the runner reads and skips done records instead.
///
/// Contract: `next_record` is called from one thread (the caller of
/// [`Runner::run`](crate::Runner::run)), never concurrently. An `Err` from either method
/// ends the run: in-flight records are committed, the job is paused, and the run reports
/// [`RunEnd::SourceFailed`](crate::RunEnd::SourceFailed). Ids must not repeat (a repeated
/// id is done once; later copies are ignored). A source that seeks must yield ids in
/// ascending order, so that "every id from `id` on" is well defined.
pub trait Source {
    /// One unit of input.
    type Record: Send;

    /// The next record, or `None` at the end.
    fn next_record(&mut self) -> Option<Result<(u64, Self::Record), BoxError>>;

    /// Positions the source so that the next record has an id of at least `id`. Returns
    /// `false` if the source cannot seek. Default: cannot.
    fn seek(&mut self, id: u64) -> Result<bool, BoxError> {
        let _ = id;
        Ok(false)
    }
}

/// A [`Source`] over any iterator of `(id, record)` pairs. It cannot seek: the runner reads
/// every pair and skips the ids already done.
#[derive(Debug)]
pub struct IterSource<I>(I);

impl<I> IterSource<I> {
    /// Wraps `iter`.
    pub fn new<R>(iter: impl IntoIterator<IntoIter = I>) -> Self
    where
        I: Iterator<Item = (u64, R)>,
    {
        IterSource(iter.into_iter())
    }
}

impl<I, R> Source for IterSource<I>
where
    I: Iterator<Item = (u64, R)>,
    R: Send,
{
    type Record = R;

    fn next_record(&mut self) -> Option<Result<(u64, R), BoxError>> {
        self.0.next().map(Ok)
    }
}

/// A seekable [`Source`] over a range of ids whose record is computed (or loaded) by a
/// function of the id: line `id` of an indexed file, row `id` of a table, object `id`
/// of a list. Seeking is free, so a resume calls the function only for ids not done.
pub struct IdSource<F> {
    ids: Range<u64>,
    load: F,
}

impl<F> std::fmt::Debug for IdSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdSource")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl<F, R> IdSource<F>
where
    F: FnMut(u64) -> Result<R, BoxError>,
    R: Send,
{
    /// Records `ids`, record `id` being `load(id)`. An `Err` from `load` ends the run (see
    /// [`Source`]); per-record failures belong in the processor instead.
    pub fn new(ids: Range<u64>, load: F) -> Self {
        IdSource { ids, load }
    }
}

impl<F, R> Source for IdSource<F>
where
    F: FnMut(u64) -> Result<R, BoxError>,
    R: Send,
{
    type Record = R;

    fn next_record(&mut self) -> Option<Result<(u64, R), BoxError>> {
        let id = self.ids.next()?;
        Some((self.load)(id).map(|r| (id, r)))
    }

    fn seek(&mut self, id: u64) -> Result<bool, BoxError> {
        self.ids.start = self.ids.start.max(id).min(self.ids.end);
        Ok(true)
    }
}

/// The done ranges as the feeder saw them when the run started, for skipping.
#[derive(Debug)]
pub(crate) struct DoneIndex(Vec<Range<u64>>);

impl DoneIndex {
    pub(crate) fn new(ranges: impl Iterator<Item = Range<u64>>) -> Self {
        DoneIndex(ranges.collect())
    }

    /// The end of the done range holding `id`, if `id` is done.
    pub(crate) fn done_until(&self, id: u64) -> Option<u64> {
        let i = self.0.partition_point(|r| r.end <= id);
        self.0.get(i).filter(|r| r.start <= id).map(|r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_source_seeks_forward_only_and_loads_only_what_is_read() {
        let loaded = std::cell::RefCell::new(Vec::new());
        let mut src = IdSource::new(0..10, |id| {
            loaded.borrow_mut().push(id);
            Ok::<_, BoxError>(id * 2)
        });
        assert!(src.seek(4).unwrap_or(false));
        let first = src.next_record().and_then(Result::ok);
        assert_eq!(first, Some((4, 8)));
        assert!(src.seek(2).unwrap_or(false), "seeking backwards is a no-op");
        assert_eq!(src.next_record().and_then(Result::ok), Some((5, 10)));
        assert!(src.seek(100).unwrap_or(false));
        assert!(src.next_record().is_none());
        assert_eq!(*loaded.borrow(), vec![4, 5]);
    }

    #[test]
    fn done_index_finds_the_end_of_the_range_holding_an_id() {
        let idx = DoneIndex::new([0..3, 5..9].into_iter());
        assert_eq!(idx.done_until(0), Some(3));
        assert_eq!(idx.done_until(2), Some(3));
        assert_eq!(idx.done_until(3), None);
        assert_eq!(idx.done_until(7), Some(9));
        assert_eq!(idx.done_until(9), None);
    }
}
