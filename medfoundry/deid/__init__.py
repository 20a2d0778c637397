"""De-identification: PHI in text (Presidio + our rules, consistent surrogates, date shifts) and DICOM."""
