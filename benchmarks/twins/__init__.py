"""The twin study: small ResNets that differ in one design choice, trained and measured on CPU."""
