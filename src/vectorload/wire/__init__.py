"""Typed contracts of the wires between components (`querynode`: the querynode HTTP API;
`address`: how a querynode pod is reached). One definition per wire, used by both ends."""
