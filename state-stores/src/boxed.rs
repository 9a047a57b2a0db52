//! Window and session stores behind a box, as their layers hold them.

use crate::Result;
use crate::session::{ReadOnlySessionStore, SessionIterator, SessionStore};
use crate::window::{ReadOnlyWindowStore, WindowIterator, WindowStore};

impl<S: ReadOnlyWindowStore + ?Sized> ReadOnlyWindowStore for Box<S> {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        (**self).fetch(key, window_start)
    }
    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        (**self).fetch_range(key, from, to)
    }
    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        (**self).fetch_all(from, to)
    }
    fn all(&self) -> Result<WindowIterator<'_>> {
        (**self).all()
    }
}

impl<S: WindowStore + ?Sized> WindowStore for Box<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        (**self).put(key, value, window_start)
    }
    fn retention(&self) -> i64 {
        (**self).retention()
    }
    fn retains_duplicates(&self) -> bool {
        (**self).retains_duplicates()
    }
}

impl<S: ReadOnlySessionStore + ?Sized> ReadOnlySessionStore for Box<S> {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        (**self).fetch_session(key, start, end)
    }
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        (**self).find_sessions(key, earliest_end, latest_start)
    }
    fn fetch(&self, key: &[u8]) -> Result<SessionIterator<'_>> {
        (**self).fetch(key)
    }
}

impl<S: SessionStore + ?Sized> SessionStore for Box<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        (**self).put(key, start, end, value)
    }
    fn retention(&self) -> i64 {
        (**self).retention()
    }
}
