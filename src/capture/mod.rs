//! Capturing face datasets: the Haar-cascade detector, frame sources (a camera through nokhwa,
//! or a folder of photos), and capture sessions that crop, check and save faces.

pub mod cascade;
pub mod quality;
pub mod session;
pub mod source;
pub mod stats;
