"""Model zoos: many small classifiers trained with drawn hyper-parameters, for predicting their generalization."""

from wsgraph.zoo.build import ZooPlan, build_zoo, read_records
from wsgraph.zoo.data import load_zoo_data
from wsgraph.zoo.hyperparams import MemberHyperparameters, SearchSpace, draw_member
from wsgraph.zoo.members import MemberArchitecture, batched_forward
from wsgraph.zoo.training import ZooData, train_group

__all__ = [
    "MemberArchitecture",
    "MemberHyperparameters",
    "SearchSpace",
    "ZooData",
    "ZooPlan",
    "batched_forward",
    "build_zoo",
    "draw_member",
    "load_zoo_data",
    "read_records",
    "train_group",
]
