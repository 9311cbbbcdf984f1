r"""MD-CVAE: Mutually-regularised Dual Collaborative VAE (Zhu & Chen, WWW 2022), the "MD-CVAE"
baseline of the graph-attentive GPT-2 paper ("extends Multi-VAE by introducing dual feature VAE
on text features to regularize rating reconstruction").

Reference code: https://github.com/yaochenzhu/MD-CVAE (TensorFlow). Two VAEs:

* collaborative (user-oriented) VAE: RecBole's :class:`~recbole.model.general_recommender.MultiVAE`
  unchanged (multinomial likelihood of the user's training row). The columns of its first encoder
  layer, :math:`W \in R^{H \times |I|}`, are the items' collaborative embeddings;
* content (item-oriented) VAE on each item's text features :math:`x_j`: an MLP encoder
  (``mdcvae_content_layers`` sigmoid layers of ``mdcvae_content_hidden``) to a Gaussian latent
  :math:`z_j` of size ``H``, a decoder with the encoder's weights transposed.

Mutual regularisation: the collaborative loss adds
``lambda_V`` x mean_j ||W_{:,j} - mu_t(x_j)||^2 (the content VAE's posterior means are the prior
of the item embeddings) and the content loss adds ``lambda_V`` x mean_j ||mu_t(x_j) - W_{:,j}||^2;
each side treats the other as a constant target (stop-gradient), plus ``lambda_W`` x L2 of the
weight matrices as in the authors' code. Prediction is Multi-VAE's (in-matrix recommendation).

Deviations from the authors' code, and why:

* they alternate whole epochs of the collaborative step and of the content step (EM-like, with
  targets refreshed once per epoch); here every batch takes one step of each (the same two
  stop-gradient objectives, block-coordinate updates), so the model trains with RecBole's own
  trainer; the content step uses ``mdcvae_item_batch_size`` random items per batch;
* their content features are bag-of-words in [0, 1] with a Bernoulli (cross-entropy) decoder; ours
  are sentence embeddings of the item texts (:func:`recbole_llm.data.features.item_text_embeddings`,
  or ``text_feature_file``), standardised per dimension, with a Gaussian (squared-error) decoder
  and a linear output layer; the decoder layers have their own biases (the authors share them);
* they pretrain the content VAE layer by layer and then as a whole; we run only the whole-VAE
  pretraining (``mdcvae_pretrain_epochs`` at ``mdcvae_pretrain_learning_rate``, item features
  only, no interactions) when the model is built;
* the collaborative VAE is RecBole's MultiVAE (input L2 normalisation, input dropout, RecBole's
  KL annealing by steps) so that MD-CVAE differs from the suite's Multi-VAE row by the dual
  content VAE only; the authors' collaborative VAE has neither input normalisation nor dropout.

Only the training split reaches the model (RecBole's ``dataset`` is the training split); item
texts are item features, not interactions.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.multivae import MultiVAE
from torch import nn

from recbole_llm.errors import ConfigError
from recbole_llm.settings import Float, Int, IntList, Settings
from recbole_llm.training.losses import l2_reg

MDCVAE_SETTINGS = Settings("MDCVAE", prefix="mdcvae_", keys={
    # RecBole's MultiVAE keys
    "mlp_hidden_size": IntList(min=1, non_empty=True, doc=(
        "collaborative VAE's hidden sizes; the first is the item-embedding size (RecBole's MultiVAE key)")),
    "latent_dimension": Int(min=2, doc=(
        "collaborative VAE's latent size: RecBole's encoder outputs 2 x this (RecBole's MultiVAE key)")),
    "dropout_prob": Float(min=0, max=1, doc="input dropout of the collaborative VAE (RecBole's MultiVAE key)"),
    "anneal_cap": Float(min=0, doc="final weight of the KL annealing (RecBole's MultiVAE key)"),
    "total_anneal_steps": Int(min=0, doc=(
        "steps over which the KL weight rises to anneal_cap (RecBole's MultiVAE key)")),
    # the dual content VAE and the mutual regularisation
    "mdcvae_lambda_v": Float(min=0, doc="lambda_V, weight of the mutual regularisation between the two VAEs"),
    "mdcvae_lambda_w": Float(min=0, doc="lambda_W, L2 weight of the weight matrices"),
    "mdcvae_content_hidden": Int(min=1, doc="content VAE's hidden size"),
    "mdcvae_content_layers": Int(min=1, doc="content VAE's hidden layers"),
    "mdcvae_content_kl_weight": Float(min=0, doc="content VAE's KL weight"),
    "mdcvae_item_batch_size": Int(min=2, doc="items per content-VAE step"),
    "mdcvae_pretrain_epochs": Int(min=0, doc="content-VAE pretraining epochs"),
    "mdcvae_pretrain_learning_rate": Float(gt=0, doc="content-VAE pretraining learning rate"),
    "mdcvae_pretrain_batch_size": Int(min=1, doc="items per content-VAE pretraining step"),
})


class ContentVAE(nn.Module):
    """The item-content VAE: sigmoid MLP encoder, Gaussian latent (mean, log-std clipped to
    [-20, 2] as the authors'), decoder with the encoder's weights transposed, linear output."""

    def __init__(self, in_dim: int, hidden: int, layers: int, latent: int):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.mean = nn.Linear(hidden, latent)
        self.logstd = nn.Linear(hidden, latent)
        self.latent_out = nn.Linear(latent, hidden)
        self.decoder_bias = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a in dims[-2::-1])
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x):
        h = x
        for layer in self.encoder:
            h = torch.sigmoid(layer(h))
        return self.mean(h), self.logstd(h).clamp(-20, 2)

    def forward(self, x):
        """``(reconstruction, mean, logstd)``; sampled latent while training, the mean otherwise."""
        mean, logstd = self.encode(x)
        z = mean + torch.randn_like(mean) * logstd.exp() if self.training else mean
        h = torch.sigmoid(self.latent_out(z))
        last = len(self.encoder) - 1
        for k, (layer, bias) in enumerate(zip(reversed(self.encoder), self.decoder_bias)):
            h = h @ layer.weight + bias
            if k < last:
                h = torch.sigmoid(h)
        return h, mean, logstd

    def weights(self):
        return [layer.weight for layer in self.encoder]

    @staticmethod
    def kl(mean, logstd):
        return 0.5 * (mean.pow(2) + (2 * logstd).exp() - 1 - 2 * logstd).sum(dim=1).mean()

    def elbo_loss(self, x, kl_weight):
        rec, mean, logstd = self(x)
        return 0.5 * (rec - x).pow(2).sum(dim=1).mean() + kl_weight * self.kl(mean, logstd), mean


class MDCVAE(MultiVAE):
    """MD-CVAE (see the module docstring): RecBole's Multi-VAE whose item embeddings (first encoder
    layer) and a dual item-text VAE regularise each other."""

    def __init__(self, config, dataset):
        s = MDCVAE_SETTINGS.read(config)  # also checks mlp_hidden_size (the first entry sizes the item embeddings)
        super().__init__(config, dataset)
        from recbole_llm.data.features import item_text_embeddings

        self.settings = s
        text = item_text_embeddings(config, dataset).float()
        has_text = text.abs().sum(dim=1) > 0
        has_text[0] = False  # padding item
        if int(has_text.sum()) < 2:
            raise ConfigError(
                f"MDCVAE needs text features for the items of dataset {config['dataset']!r}, but "
                f"{int(has_text.sum())} item(s) have any: check item_text_template and load_col, or text_feature_file."
            )
        mean, std = text[has_text].mean(dim=0), text[has_text].std(dim=0).clamp_min(1e-6)
        features = torch.where(has_text[:, None], (text - mean) / std, torch.zeros_like(text))
        self.register_buffer("item_features", features.to(self.device))
        self.register_buffer("text_items", has_text.nonzero().view(-1).to(self.device))
        self.content_vae = ContentVAE(text.shape[1], s.content_hidden, s.content_layers, s.mlp_hidden_size[0]).to(self.device)
        self.pretrain_content_vae()

    @property
    def item_collab_embeddings(self):
        """``[n_items, H]``: the first encoder layer's weights, one row per item."""
        return self.encoder[0].weight.T

    def pretrain_content_vae(self):
        """The authors' whole-VAE pretraining of the content VAE on the item features alone."""
        s = self.settings
        if s.pretrain_epochs == 0:
            return
        optimizer = torch.optim.Adam(self.content_vae.parameters(), lr=s.pretrain_learning_rate)
        items = self.text_items
        was_training = self.content_vae.training
        self.content_vae.train()
        for _ in range(s.pretrain_epochs):
            for batch in items[torch.randperm(len(items), device=items.device)].split(s.pretrain_batch_size):
                loss, _ = self.content_vae.elbo_loss(self.item_features[batch], s.content_kl_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.content_vae.train(was_training)

    def content_means(self, items):
        """Posterior means of the content VAE for ``items``."""
        return self.content_vae.encode(self.item_features[items])[0]

    def calculate_loss(self, interaction):
        s = self.settings
        collaborative = super().calculate_loss(interaction)  # Multi-VAE: multinomial + annealed KL
        items = self.text_items
        embeddings = self.item_collab_embeddings
        # collaborative step: item embeddings pulled towards the content VAE's means (targets fixed)
        with torch.no_grad():
            targets = self.content_means(items)
        collab_reg = (embeddings[items] - targets).pow(2).sum(dim=1).mean()
        collaborative = collaborative + s.lambda_v * collab_reg \
            + s.lambda_w * l2_reg(self.encoder[0].weight, self.decoder[0].weight)
        # content step: a random batch of items, their means pulled towards the item embeddings
        batch = items[torch.randint(len(items), (min(s.item_batch_size, len(items)),), device=items.device)]
        content, means = self.content_vae.elbo_loss(self.item_features[batch], s.content_kl_weight)
        content = content + s.lambda_v * (means - embeddings[batch].detach()).pow(2).sum(dim=1).mean() \
            + s.lambda_w * l2_reg(*self.content_vae.weights())
        return collaborative + content
