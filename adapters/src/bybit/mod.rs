//! Bybit v5 public market data (spot and linear): wire parsing ([`parse`]) and the venue's
//! snapshot/delta book continuity with resubscription on a gap ([`feed::BybitFeed`]).

pub mod feed;
pub mod parse;
