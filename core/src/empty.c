/* empty.c: placeholder object for a layer that has no sources yet. */
typedef int itr_empty_translation_unit;
