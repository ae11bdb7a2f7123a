//! Preference-pair normalisation (being written).
