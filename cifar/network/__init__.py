"""What every network is made of and how a trained one is read, with no training code: our layers
and the input every model starts with (layers.py), loading a trained model file and finding its
class scores (trained.py). The models themselves are cifar/models/, one file each."""
