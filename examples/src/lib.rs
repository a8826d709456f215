//! FIX client examples on QuickFIX C++ (through quickfix-rs), kept out of the core crates'
//! build so that the exchange itself builds without cmake.
