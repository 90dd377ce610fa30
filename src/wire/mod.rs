//! The API's wire conventions, one module each, below both the layers (`middleware/`) and the
//! domains, so that either side imports them and nothing imports back (docs/api.md): how
//! bodies are declared and read ([`body`], [`fields`], [`extract`]), conditional requests
//! ([`conditional`]), list pages and cursors ([`pagination`]), timestamps ([`time`]), and the
//! marks a handler leaves on a response for a layer further out ([`response`]), and the enums the
//! wire spells by name ([`names`]).

pub mod body;
pub mod conditional;
pub mod extract;
pub mod fields;
pub mod names;
pub mod pagination;
pub mod response;
pub mod time;
