"""The vectorload operator: reconciles CollectionLoad resources into querynode placements."""
