"""Images and maps in and out: the CT reader (files and DICOM series), RTSTRUCT in and out, probability and label
maps, NIfTI on a CT's geometry. No store, web or inference import."""
