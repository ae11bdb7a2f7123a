//! Survey section splitting (being written).
