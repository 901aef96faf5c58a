import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { IsArray } from 'class-validator';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { IsAbsentOr, rule } from '../common/validators.js';
import { labelSelectorProblem, type LabelSelector } from '../common/label-selector.js';

const IsLabelSelector = () => rule('isLabelSelector', labelSelectorProblem);
const IsClusterNames = () =>
  rule('isClusterNames', (v) => {
    if (!Array.isArray(v)) return 'must be an array of cluster names';
    if (v.length > 10_000) return 'must name at most 10000 clusters';
    const bad: unknown = (v as unknown[]).find((n) => typeof n !== 'string' || dns1123LabelProblem(n));
    return bad === undefined
      ? undefined
      : `has an invalid cluster name ${JSON.stringify(typeof bad === 'string' ? bad.slice(0, 80) : bad)}`;
  });

export const LABEL_SELECTOR_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  additionalProperties: true,
  description: 'Kubernetes label selector: matchLabels and/or matchExpressions (In, NotIn, Exists, DoesNotExist)',
  example: { matchLabels: { tier: 'store' }, matchExpressions: [{ key: 'region', operator: 'In', values: ['eu-west', 'eu-north'] }] },
};

export class PublishDto {
  @ApiPropertyOptional({ type: [String], example: ['eu-west-store-0042'], description: 'clusters by name' })
  @IsAbsentOr()
  @IsArray()
  @IsClusterNames()
  clusters?: string[];

  @ApiPropertyOptional({ ...LABEL_SELECTOR_SCHEMA, description: 'and/or every cluster whose labels match (now and later)' })
  @IsAbsentOr()
  @IsLabelSelector()
  selector?: LabelSelector;
}

export class UnpublishDto {
  @ApiPropertyOptional({ type: [String], description: 'only from these clusters; omitted: from every cluster' })
  @IsAbsentOr()
  @IsArray()
  @IsClusterNames()
  clusters?: string[];
}

export class ProjectClusterSelectorDto {
  @ApiProperty({
    ...LABEL_SELECTOR_SCHEMA,
    nullable: true,
    description: 'the clusters the project may publish to; {} allows all, null none',
  })
  // Required, so an empty body is an error rather than a silent "no clusters".
  @rule('isLabelSelectorOrNull', (v) => (v === null ? undefined : labelSelectorProblem(v)))
  selector!: LabelSelector | null;
}

export type DeliveryState = 'pending' | 'provisioned' | 'failed' | 'deprovisioning' | 'deprovisioned';

export class ClusterDeliveryView {
  @ApiProperty({ example: 'eu-west-store-0042' }) cluster!: string;
  @ApiProperty({ enum: ['pending', 'provisioned', 'failed', 'deprovisioning', 'deprovisioned'] }) state!: DeliveryState;
  @ApiProperty({ example: '12', description: 'the cluster generation that carries this app’s current content' }) desiredGeneration!: string;
  @ApiProperty({ example: '12', description: 'the generation the cluster’s agent last applied' }) appliedGeneration!: string;
  @ApiProperty({ nullable: true, type: String, example: 'Conflict: shop/checkout-db' }) reason!: string | null;
  @ApiProperty() since!: Date;
}

export class PublicationSummary {
  @ApiProperty() clusters!: number;
  @ApiProperty() pending!: number;
  @ApiProperty() provisioned!: number;
  @ApiProperty() failed!: number;
  @ApiProperty() deprovisioning!: number;
  @ApiProperty() deprovisioned!: number;
  @ApiProperty({ description: 'nothing pending or deprovisioning' }) converged!: boolean;
}

export class PublicationView {
  @ApiProperty({ example: 'shop' }) project!: string;
  @ApiProperty({ example: 'checkout' }) app!: string;
  @ApiProperty({ type: [String] }) clusters!: string[];
  @ApiProperty({ type: 'array', items: { type: 'object', additionalProperties: true } }) selectors!: LabelSelector[];
  @ApiProperty({ type: [String] }) excluded!: string[];
  @ApiProperty({ type: PublicationSummary }) summary!: PublicationSummary;
  @ApiProperty({ type: [ClusterDeliveryView] }) deliveries!: ClusterDeliveryView[];
}
